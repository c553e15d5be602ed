"""Loading app.py the way `streamlit run` does (no script context): it builds the ASGI app and
logs nothing a newcomer would take for a problem."""

from __future__ import annotations

import os
import subprocess
import sys

from nexus_core.settings import Settings
from tests.constants import ROOT

LOAD_APP = "import runpy; app = runpy.run_path('app.py')['app']; print(type(app).__name__)"


def test_loading_the_app_builds_it_without_a_missing_script_context_warning(
    settings: Settings,
) -> None:
    env = {
        **os.environ,
        "NEXUS_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "NEXUS_ENV": "test",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "App"
    assert "ScriptRunContext" not in loaded.stderr
    assert "Traceback" not in loaded.stderr
