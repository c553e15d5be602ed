"""The process-wide objects the pages share, built once with ``st.cache_resource``."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.db.migrate import current_revision, head_revision
from nexus_core.errors import ConfigError
from nexus_core.settings import load_settings


def _release(ctx: AppContext) -> None:
    ctx.close()


@st.cache_resource(show_spinner=False, on_release=_release)
def get_context() -> AppContext:
    """The one ``AppContext`` of this server process; refuses to start when misconfigured."""
    settings = load_settings()
    settings.require_production_secrets()
    ctx = AppContext(settings)
    if current_revision(ctx.db.engine) != head_revision():
        ctx.close()
        raise ConfigError(
            "The database is not initialised or is out of date; run `nexus init` "
            "(or `make run`, which does) and reload this page."
        )
    ctx.alert_scheduler.start()  # every process runs one; the database lease picks who works
    if settings.retention_configured:
        ctx.retention_scheduler.start()  # likewise, once a day
    return ctx
