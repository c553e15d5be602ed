"""Database: typed SQLAlchemy 2.0 models, engine and session setup, migrations."""

import nexus_core.db.notes  # noqa: F401  (registers FeedbackNote on Base.metadata)
