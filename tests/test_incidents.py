"""Unexpected errors: a reference, the frames on the server, never an exception's message —
on every path that logs, not only the one that records incidents."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from nexus_core.ops.incidents import redacted_frames

SECRET = "postgresql://nexus:hunter2-db-password@db.internal/nexus"
KEY = "AIzaSy-gemini-key-0123456789"

# A server process as `streamlit run app.py` sets it up, logging the way each path does.
SERVER_SCRIPT = textwrap.dedent(
    f"""
    import logging, sys
    from nexus_core.web import server

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
    server.withhold_exception_text_from_logs()

    def fail():
        try:
            raise ConnectionError("token {KEY}")
        except ConnectionError as inner:
            raise RuntimeError("cannot connect to {SECRET}") from inner

    for name, how in (
        ("nexus.errors", "exception"),          # the fallback when incidents cannot be recorded
        ("streamlit.error_util", "exc_info"),   # Streamlit's own log of a script error
        ("sqlalchemy.pool.impl", "exc_info"),   # a library logging a failure its own way
        ("nexus.ai.jobs", "error_instance"),
    ):
        logger = logging.getLogger(name)
        try:
            fail()
        except RuntimeError as exc:
            if how == "exception":
                logger.exception("could not record an unexpected error")
            elif how == "exc_info":
                logger.error("Uncaught app execution", exc_info=True)
            else:
                logger.error("job failed", exc_info=exc)
    """
)


def test_no_log_line_of_the_server_carries_an_exceptions_message() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVER_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "hunter2" not in log and KEY not in log and "db.internal" not in log
    # What is useful stays: where it happened, and what kind of error it was.
    assert log.count("builtins.RuntimeError (message withheld)") == 4
    assert log.count("caused by builtins.ConnectionError (message withheld)") == 4
    assert "in fail" in log and "could not record an unexpected error" in log


def test_redacted_frames_name_the_place_and_type_but_not_the_text() -> None:
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError as exc:
        text = redacted_frames(exc)
    assert KEY not in text
    assert "test_incidents.py" in text and "builtins.ValueError (message withheld)" in text
