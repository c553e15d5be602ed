"""Who may do what: the roles an account holds and the built-in administrator's name.

Kept free of heavy imports so the command line can offer them in its help without loading the
database layer."""

from __future__ import annotations

from typing import Final

ROLES: Final = ("admin", "analyst", "member")
ADMIN_USERNAME: Final = "admin"
