"""Wiring of the real objects for one process: settings, database and services.

The Streamlit UI caches one ``AppContext`` per process (``nexus_core.ui.resources``); the CLI builds
its own. Tests build one around a temporary data dir.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from nexus_core.auth import SignInService
from nexus_core.db.engine import Database
from nexus_core.db.migrate import upgrade_to_head
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings, load_settings
from nexus_core.users import UserService


@dataclass
class InitReport:
    """What ``nexus init`` did."""

    personas_created: int
    admin_created: bool
    admin_password: str | None
    jobs_recovered: int = 0


@dataclass
class AppContext:
    """The settings plus lazily built services that share one database."""

    settings: Settings = field(default_factory=load_settings)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def users(self) -> UserService:
        return UserService(self.db)

    @cached_property
    def sign_in(self) -> SignInService:
        return SignInService(self.db)

    @cached_property
    def personas(self) -> PersonaService:
        return PersonaService(self.db)

    def init(self) -> InitReport:
        """Create or upgrade the schema, seed personas, make sure an admin exists."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(self.db.engine)
        created = self.personas.seed_defaults()
        admin_created, password = self.users.ensure_admin(self.settings.admin_password)
        return InitReport(created, admin_created, password)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
