"""Settings as data: one frozen object built from the environment and `.streamlit/secrets.toml`.

Environment variables win over the secrets file. Every field names its variable and carries help
text; the README documents each one (a test checks this). Secrets are excluded from ``repr``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nexus_core.errors import ConfigError
from nexus_core.privacy.redaction import KINDS as REDACTION_KINDS

ENVIRONMENTS = ("development", "test", "production")
PROVIDERS = ("gemini", "openai", "simulated")
JOB_BACKENDS = ("thread", "queue")
MIN_COOKIE_KEY_LENGTH = 32
# Values from examples and docs that must never sign real cookies.
PLACEHOLDER_SECRETS = frozenset(
    {
        "replace-with-at-least-32-random-characters-0000",
        "change-me",
        "changeme",
        "secret",
        "some_key",
    }
)
SECRETS_FILE = Path(".streamlit") / "secrets.toml"
EVENT_LOG_NAME = "api_events.log"
LOG_HOST_AUTO = "auto"  # NEXUS_LOG_HOST=auto: the machine's host name
# A host name, IPv4 address or bracketed IPv6 address: nothing that could end a CSP directive.
IMAGE_HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


def _setting(env: str, default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every tunable of Nexus AI, with its environment variable and default."""

    data_dir: Path = _setting(
        "NEXUS_DATA_DIR", Path("data"), "All runtime state: SQLite file, logs/, analytics cache."
    )
    database_url: str = _setting(
        "DATABASE_URL", "", "SQLAlchemy URL; default sqlite:///<NEXUS_DATA_DIR>/nexus.db."
    )
    env: str = _setting("NEXUS_ENV", "development", "development, test or production.")
    ai_provider: str = _setting(
        "NEXUS_AI_PROVIDER", "", "gemini, openai or simulated; default gemini when a key is set."
    )
    gemini_api_key: str | None = _setting(
        "GEMINI_API_KEY", None, "Google AI Studio key (x-goog-api-key header).", secret=True
    )
    gemini_model: str = _setting("GEMINI_MODEL", "gemini-flash-latest", "Default Gemini model.")
    gemini_api_base: str = _setting(
        "GEMINI_API_BASE",
        "https://generativelanguage.googleapis.com/v1beta",
        "Gemini REST base URL.",
    )
    gemini_timeout_seconds: float = _setting(
        "GEMINI_TIMEOUT_SECONDS",
        30.0,
        "Time limit of one whole Gemini attempt (connect to last byte); a timeout is transient.",
    )
    openai_api_base: str | None = _setting(
        "OPENAI_API_BASE", None, "Base URL of an OpenAI-compatible server (…/v1)."
    )
    openai_api_key: str | None = _setting(
        "OPENAI_API_KEY", None, "Key for the OpenAI-compatible server.", secret=True
    )
    openai_model: str | None = _setting("OPENAI_MODEL", None, "Model for the OpenAI provider.")
    openai_timeout_seconds: float = _setting(
        "OPENAI_TIMEOUT_SECONDS",
        30.0,
        "Time limit of one whole OpenAI-compatible attempt; a timeout is transient.",
    )
    max_reply_chars: int = _setting(
        "NEXUS_MAX_REPLY_CHARS",
        100_000,
        "Longest AI reply accepted; a longer one is stopped and fails, nothing of it is stored.",
    )
    max_sse_event_bytes: int = _setting(
        "NEXUS_MAX_SSE_EVENT_BYTES",
        1_048_576,
        "Longest line, and largest event, of a provider's event stream.",
    )
    max_response_bytes: int = _setting(
        "NEXUS_MAX_RESPONSE_BYTES",
        8_388_608,
        "Most bytes of a provider's stream read in one attempt.",
    )
    job_deadline_seconds: float = _setting(
        "NEXUS_JOB_DEADLINE_SECONDS",
        90.0,
        "Time limit of one AI reply job, its retries and their waits included.",
    )
    health_queue_wait_seconds: float = _setting(
        "NEXUS_HEALTH_QUEUE_WAIT_SECONDS",
        30.0,
        "Health reports an error when a chat reply has waited longer for a worker.",
    )
    log_max_bytes: int = _setting(
        "NEXUS_LOG_MAX_BYTES", 52_428_800, "Rotate api_events.log past this size."
    )
    log_backups: int = _setting(
        "NEXUS_LOG_BACKUPS", 20, "How many rotated event log files to keep."
    )
    log_host: str = _setting(
        "NEXUS_LOG_HOST",
        "",
        "Empty: events go to logs/api_events.log; a name (or auto: the host name) puts this "
        "process's events in logs/<name>/api_events.log. Readers take every host's file.",
    )
    retry_base_seconds: float = _setting(
        "NEXUS_RETRY_BASE_SECONDS", 1.0, "Backoff base for retries of transient AI failures."
    )
    cookie_key: str | None = _setting(
        "NEXUS_COOKIE_KEY",
        None,
        "Keys the stored hashes of login-cookie tokens; generated per data dir in development.",
        secret=True,
    )
    cookie_expiry_days: float = _setting(
        "NEXUS_COOKIE_EXPIRY_DAYS",
        7.0,
        "How long a sign-in and its login cookie last (fixed when issued; more than 0).",
    )
    admin_password: str | None = _setting(
        "NEXUS_ADMIN_PASSWORD",
        None,
        "Password for the admin that `nexus init` creates.",
        secret=True,
    )
    redis_url: str | None = _setting(
        "REDIS_URL", None, "Optional Redis; when set, the health check covers it.", secret=True
    )
    job_backend: str = _setting(
        "NEXUS_JOB_BACKEND",
        "thread",
        "thread: AI jobs run on threads of the app process; queue: they go through the broker "
        "and `nexus worker` processes run them.",
    )
    broker_url: str | None = _setting(
        "NEXUS_BROKER_URL",
        None,
        "The queue backend's Redis (redis://…); default REDIS_URL.",
        secret=True,
    )
    queue_namespace: str = _setting(
        "NEXUS_QUEUE_NAMESPACE",
        "nexus",
        "Prefix of the queue backend's Redis keys (queues, reply streams, worker heartbeats).",
    )
    queue_redelivery_seconds: float = _setting(
        "NEXUS_QUEUE_REDELIVERY_SECONDS",
        15.0,
        "Queue backend: a worker silent this long counts as dead and its jobs are delivered to "
        "another worker.",
    )
    max_message_chars: int = _setting(
        "NEXUS_MAX_MESSAGE_CHARS", 8000, "Longest chat message accepted."
    )
    context_budget_chars: int = _setting(
        "NEXUS_CONTEXT_BUDGET_CHARS", 24_000, "History sent to the model, newest first."
    )
    worker_threads: int = _setting(
        "NEXUS_WORKER_THREADS", 4, "Background threads that run AI response jobs."
    )
    simulated_latency_seconds: float = _setting(
        "NEXUS_SIMULATED_LATENCY_SECONDS", 0.02, "Delay per word of the simulated model."
    )
    simulated_failure_rate: float = _setting(
        "NEXUS_SIMULATED_FAILURE_RATE", 0.0, "Share of simulated calls that fail with a 503."
    )
    sql_timeout_seconds: float = _setting(
        "NEXUS_SQL_TIMEOUT_SECONDS", 10.0, "Workbench and `nexus sql`: a query's time limit."
    )
    sql_memory_limit: str = _setting(
        "NEXUS_SQL_MEMORY_LIMIT",
        "512MB",
        "Workbench and `nexus sql`: DuckDB memory for one run, the copied tables included.",
    )
    sql_download_max_bytes: int = _setting(
        "NEXUS_SQL_DOWNLOAD_MAX_BYTES",
        104_857_600,
        "Workbench downloads and `nexus sql` csv/json: the largest full result file.",
    )
    image_hosts: str = _setting(
        "NEXUS_IMAGE_HOSTS",
        "",
        "Comma-separated hosts whose images may load in chat messages (and that the browser's "
        "Content-Security-Policy allows); none by default.",
    )
    redact: str = _setting(
        "NEXUS_REDACT",
        "",
        "Comma-separated kinds masked in stored user messages and event fields before they are "
        "written: emails, phones, cards, secrets (none by default).",
    )
    redact_prompts: bool = _setting(
        "NEXUS_REDACT_PROMPTS",
        False,
        "Send the model the masked text too (off: it receives what the person typed).",
    )
    retain_content_days: int | None = _setting(
        "NEXUS_RETAIN_CONTENT_DAYS",
        None,
        "Days message, feedback and note text and sessions' titles are kept; older text becomes "
        "'[removed by retention policy]' (rows, tokens and costs stay). Unset: kept forever.",
    )
    retain_events_days: int | None = _setting(
        "NEXUS_RETAIN_EVENTS_DAYS",
        None,
        "Days the event log is kept: rotated files whose newest event is older are deleted with "
        "their compacted copies (a live file only once last written before the cutoff). "
        "Unset: kept forever.",
    )
    alert_webhook_urls: str = _setting(
        "NEXUS_ALERT_WEBHOOK_URLS",
        "",
        "Comma-separated webhook URLs that alert notifications are POSTed to (the Alerts page "
        "adds more).",
        secret=True,
    )
    alert_webhook_secret: str | None = _setting(
        "NEXUS_ALERT_WEBHOOK_SECRET",
        None,
        "When set, each webhook body is signed: X-Nexus-Signature: sha256=<hex HMAC-SHA256>.",
        secret=True,
    )
    alert_renotify_minutes: float = _setting(
        "NEXUS_ALERT_RENOTIFY_MINUTES",
        240.0,
        "While an alert keeps firing, tell the webhooks again this often (0: never).",
    )
    alert_interval_seconds: float = _setting(
        "NEXUS_ALERT_INTERVAL_SECONDS",
        60.0,
        "How often the app's scheduler evaluates the alert rules (one process of a deployment "
        "does, under a database lease); 0 turns the scheduler off.",
    )
    public_url: str = _setting(
        "NEXUS_PUBLIC_URL",
        "",
        "The app's address as people reach it (https://nexus.example.com); alert messages link "
        "to it. Empty: links are relative paths.",
    )
    otel_exporter_otlp_endpoint: str | None = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        "OpenTelemetry collector base URL; when set, AI jobs are exported as OTLP/HTTP traces "
        "(to <endpoint>/v1/traces).",
        secret=True,  # a collector URL may carry credentials
    )
    otel_service_name: str = _setting(
        "OTEL_SERVICE_NAME", "nexus-ai", "service.name of the exported traces."
    )
    otel_capture_content: bool = _setting(
        "NEXUS_OTEL_CAPTURE_CONTENT",
        False,
        "Include message text in exported spans (off: it may hold personal data).",
    )

    password_login: bool = _setting(
        "NEXUS_PASSWORD_LOGIN",
        True,
        "Offer the password form; false hides it when single sign-on ([auth] in secrets.toml) "
        "is configured.",
    )
    oidc_role_claim: str = _setting(
        "NEXUS_OIDC_ROLE_CLAIM",
        "",
        "Single sign-on: the ID token claim (e.g. groups) whose values decide the role at every "
        "sign-in; empty: roles are managed in Nexus and new users are members.",
    )
    oidc_admin_values: str = _setting(
        "NEXUS_OIDC_ADMIN_VALUES",
        "",
        "Single sign-on: comma-separated values of the role claim that make an admin.",
    )
    oidc_analyst_values: str = _setting(
        "NEXUS_OIDC_ANALYST_VALUES",
        "",
        "Single sign-on: comma-separated values of the role claim that make an analyst "
        "(otherwise member).",
    )

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigError(
                f"NEXUS_ENV must be one of {', '.join(ENVIRONMENTS)}, not {self.env!r}."
            )
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'nexus.db'}")
        if not self.ai_provider:
            object.__setattr__(
                self, "ai_provider", "gemini" if self.gemini_api_key else "simulated"
            )
        if self.ai_provider not in PROVIDERS:
            raise ConfigError(
                f"NEXUS_AI_PROVIDER must be one of {', '.join(PROVIDERS)}, "
                f"not {self.ai_provider!r}."
            )

        self._check_job_backend()
        self._check_lists()
        self._check_retention()

    def _check_job_backend(self) -> None:
        if self.job_backend not in JOB_BACKENDS:
            raise ConfigError(
                f"NEXUS_JOB_BACKEND must be one of {', '.join(JOB_BACKENDS)}, "
                f"not {self.job_backend!r}."
            )
        if not self.broker_url and self.redis_url:
            object.__setattr__(self, "broker_url", self.redis_url)
        if self.job_backend == "queue" and not self.broker_url:
            raise ConfigError(
                "NEXUS_JOB_BACKEND=queue needs a broker: set REDIS_URL (or NEXUS_BROKER_URL), "
                "e.g. redis://127.0.0.1:6379/0."
            )
        if self.queue_redelivery_seconds <= 0:
            raise ConfigError("NEXUS_QUEUE_REDELIVERY_SECONDS must be more than 0.")

    def _check_lists(self) -> None:
        unknown = [k for k in self.redacted_kinds if k not in REDACTION_KINDS]
        if unknown:
            raise ConfigError(
                f"NEXUS_REDACT takes {', '.join(REDACTION_KINDS)}, not {unknown[0]!r}."
            )
        if self.log_host not in ("", LOG_HOST_AUTO) and not _host_directory(self.log_host):
            raise ConfigError(
                "NEXUS_LOG_HOST names this process's directory under logs/: give it letters or "
                f"digits (or auto), not {self.log_host!r}; it cannot be named like the log's "
                "own files (api_events.log…)."
            )
        bad = [h for h in self.allowed_image_hosts if not IMAGE_HOST_PATTERN.fullmatch(h)]
        if bad:
            raise ConfigError(
                f"NEXUS_IMAGE_HOSTS lists host names without scheme or port, not {bad[0]!r}."
            )

    def _check_retention(self) -> None:
        for name in ("retain_content_days", "retain_events_days"):
            value = getattr(self, name)
            if value is None:
                continue
            variable = next(f.metadata["env"] for f in fields(self) if f.name == name)
            try:
                days = int(value)
            except ValueError:
                raise ConfigError(
                    f"{variable} must be a whole number of days, not {value!r}."
                ) from None
            if days < 1:
                raise ConfigError(f"{variable} must be at least 1 (unset it to keep everything).")
            object.__setattr__(self, name, days)

    @property
    def retention_configured(self) -> bool:
        """Whether any retention setting is set (else everything is kept)."""
        return self.retain_content_days is not None or self.retain_events_days is not None

    @property
    def allowed_image_hosts(self) -> tuple[str, ...]:
        """The hosts of ``NEXUS_IMAGE_HOSTS``, lower-cased."""
        return tuple(h.strip().lower() for h in self.image_hosts.split(",") if h.strip())

    @property
    def redacted_kinds(self) -> tuple[str, ...]:
        """The kinds of ``NEXUS_REDACT``, lower-cased."""
        return tuple(k.strip().lower() for k in self.redact.split(",") if k.strip())

    @property
    def alert_webhooks(self) -> tuple[str, ...]:
        """The URLs of ``NEXUS_ALERT_WEBHOOK_URLS``."""
        return tuple(u.strip() for u in self.alert_webhook_urls.split(",") if u.strip())

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def event_log_path(self) -> Path:
        """The top-level log file: where readers start (they take every host's log too)."""
        return self.log_dir / EVENT_LOG_NAME

    @property
    def own_event_log_path(self) -> Path:
        """The file this process writes its events to (see ``NEXUS_LOG_HOST``)."""
        if not self.log_host:
            return self.event_log_path
        if self.log_host == LOG_HOST_AUTO:
            host = _host_directory(socket.gethostname()) or "host"
        else:
            host = _host_directory(self.log_host)
        return self.log_dir / host / EVENT_LOG_NAME

    def require_production_secrets(self) -> None:
        """Refuse to start in production without a strong cookie key."""
        if self.is_production and (
            not self.cookie_key
            or len(self.cookie_key) < MIN_COOKIE_KEY_LENGTH
            or self.cookie_key in PLACEHOLDER_SECRETS
        ):
            raise ConfigError(
                "NEXUS_ENV=production needs NEXUS_COOKIE_KEY of at least "
                f"{MIN_COOKIE_KEY_LENGTH} random characters; set it, e.g. with "
                "`export NEXUS_COOKIE_KEY=$(openssl rand -base64 48)`."
            )

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, help) for every setting, for the README and `--help` texts."""
        return [(f.metadata["env"], str(f.default), f.metadata["help"]) for f in fields(cls)]

    @classmethod
    def from_sources(
        cls, environ: Mapping[str, str] | None = None, secrets_file: Path | None = SECRETS_FILE
    ) -> Settings:
        """Build settings from environment variables, falling back to the secrets file."""
        environ = os.environ if environ is None else environ
        secrets = _read_secrets(secrets_file)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = environ.get(name)
            if raw is None or raw == "":
                raw = secrets.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, raw, f.default)
        return cls(**values)


def _read_secrets(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _convert(name: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, Path):
            return Path(str(raw))
        if isinstance(default, bool):
            return str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, not {raw!r}.") from exc
    return str(raw)


def _host_directory(name: str) -> str:
    """``NEXUS_LOG_HOST`` (or the host name) as one directory name under ``logs/``: characters
    other than letters, digits, ``.``, ``_`` and ``-`` become ``-`` (a systemd instance's
    commas, a path's slashes) and leading ``.``, ``_``, ``-`` go, so it is never ``..`` or
    hidden; empty when nothing is left."""
    directory = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-")[:100]
    # Not a name of the top-level log's files (``api_events.log``, ``.1``, ``.lock``): a
    # directory there would stop its writers and its rotation.
    return "" if directory.startswith(EVENT_LOG_NAME) else directory


def load_settings() -> Settings:
    """The settings of this process, read from the environment and the secrets file."""
    return Settings.from_sources()
