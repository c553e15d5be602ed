"""Operations panel for admins: the health checks and a way to test error reporting."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.ops.health import run_health
from nexus_core.ui.show import plain

TEST_ERROR_BUTTON = "nexus_send_test_error"


class DeliberateError(RuntimeError):
    """Raised on purpose so an admin can see the error page and the report flow work."""


def operations_panel(ctx: AppContext) -> None:
    """Health checks as the /health endpoint sees them, and a test-error button."""
    with st.expander("Operations"):
        report = run_health(ctx.settings, ctx.db)
        for name, check in report.to_dict()["checks"].items():
            st.write(
                f"{'✅' if check['ok'] else '❌'} **{plain(name)}** — {plain(check['detail'])} "
                f"({check['latency_ms']:.0f} ms)"
            )
        st.caption("Scrape `/metrics` with Prometheus; probe `/health` from your load balancer.")
        if st.button(
            "Send a test error",
            key=TEST_ERROR_BUTTON,
            help="Shows the error page users see, with a reference and a report button.",
        ):
            raise DeliberateError("test error requested from the dashboard")
