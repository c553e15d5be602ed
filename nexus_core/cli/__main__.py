"""``python -m nexus_core.cli``: the ``nexus`` command line."""

from nexus_core.cli import main

raise SystemExit(main())
