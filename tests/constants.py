"""Values many test modules share: the repository's root and the password test users get.

AppTest helpers and their constants (the app's path, the default timeout) are in
``tests/apptest.py``; this module holds what tests of every kind use.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-1"
"""The password of the users tests create (long enough for the password rules)."""
