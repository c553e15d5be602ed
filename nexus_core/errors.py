"""The one exception tree of Nexus AI.

    NexusError                      anything we expect and can explain to a user
    ├── ConfigError                 a setting is missing or wrong (tells which and how to fix it)
    ├── ProviderError               the AI provider failed
    │   ├── TransientProviderError  worth retrying (408/429/5xx, timeouts, connection errors)
    │   └── PermanentProviderError  not worth retrying (400/401/403/404, safety blocks)
    ├── DatabaseUnavailable         the database cannot be reached or written just now
    ├── QueueUnavailable            the job queue's broker (Redis) cannot be reached just now
    ├── NotFound                    a row the caller asked for does not exist
    ├── PermissionDenied            the caller may not do this
    └── ValidationError             the input is wrong; the message says how
        └── QueryError              a workbench query failed: DuckDB's message and position
            ├── QueryRefused        the sandbox forbids it (not one SELECT, a file, a setting)
            └── QueryTimeout        it ran past the time limit and was stopped

Foreign exceptions are translated once, at the adapter, with ``raise ... from exc``. Pages catch
``NexusError`` once and show its message; anything else is a bug and goes to the error handler.
Messages never contain secrets.
"""

from __future__ import annotations


class NexusError(Exception):
    """An expected failure whose message tells the user what happened and what to do."""


class ConfigError(NexusError):
    """A setting is missing or invalid."""


class ProviderError(NexusError):
    """The AI provider could not produce a reply."""

    error_type: str = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        if error_type:
            self.error_type = error_type


class TransientProviderError(ProviderError):
    """A provider failure worth retrying; ``retry_after`` is the server's wait hint in seconds."""

    error_type = "transient"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """A provider failure that retrying cannot fix (bad request, bad key, blocked content)."""

    error_type = "permanent"


class DatabaseUnavailable(NexusError):
    """The database cannot be reached or written just now; nothing of the action was saved.

    ``reason`` is the driver's first line, for operators (the CLI, logs): never shown on a page.
    """

    MESSAGE = (
        "The database cannot be written just now, so nothing was saved. Anything you typed is "
        "kept here; try again in a moment, and tell an admin if it lasts."
    )

    def __init__(self, reason: str) -> None:
        super().__init__(self.MESSAGE)
        self.reason = reason


class QueueUnavailable(NexusError):
    """The queue backend's broker cannot be reached, so a job cannot be queued just now."""


class NotFound(NexusError):
    """The requested object does not exist (or is not visible to the caller)."""


class PermissionDenied(NexusError):
    """The caller's role or flags do not allow this action."""


class BudgetExceeded(NexusError):
    """A hard monthly budget is spent: the message is refused before any provider is called."""


class ValidationError(NexusError):
    """The input is invalid; the message says what to change."""


class QueryError(ValidationError):
    """A workbench query failed; the message is DuckDB's, with the position when it is known.

    ``line`` and ``column`` (1-based) point into the query; ``summary`` is the message on one line.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    @property
    def summary(self) -> str:
        """The message's first line, with the position, for one-line outputs such as the CLI."""
        first = str(self).strip().splitlines()[0] if str(self).strip() else type(self).__name__
        if self.line is None:
            return first
        return f"{first} (line {self.line}, column {self.column})"


class QueryRefused(QueryError):
    """The workbench sandbox does not allow the query (not a single SELECT, files, settings)."""


class QueryTimeout(QueryError):
    """The query ran longer than the time limit and was interrupted."""
