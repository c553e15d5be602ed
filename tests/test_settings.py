"""Settings: defaults from the contract, env over secrets, production refuses weak cookie keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nexus_core.errors import ConfigError
from nexus_core.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
CONTRACT_SETTINGS = (
    "NEXUS_DATA_DIR",
    "DATABASE_URL",
    "NEXUS_ENV",
    "NEXUS_AI_PROVIDER",
    "GEMINI_API_KEY",
    "GEMINI_MODEL",
    "GEMINI_API_BASE",
    "GEMINI_TIMEOUT_SECONDS",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "NEXUS_LOG_MAX_BYTES",
    "NEXUS_RETRY_BASE_SECONDS",
    "NEXUS_COOKIE_KEY",
    "NEXUS_ADMIN_PASSWORD",
    "REDIS_URL",
    "NEXUS_JOB_BACKEND",
    "NEXUS_BROKER_URL",
)


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_sources({}, secrets_file=None)
    assert s.data_dir == Path("data")
    assert s.database_url == "sqlite:///data/nexus.db"
    assert s.env == "development"
    assert s.ai_provider == "simulated"
    assert s.gemini_model == "gemini-flash-latest"
    assert s.gemini_api_base == "https://generativelanguage.googleapis.com/v1beta"
    assert s.gemini_timeout_seconds == 30
    assert s.log_max_bytes == 52_428_800
    assert s.retry_base_seconds == 1.0
    assert s.event_log_path == Path("data/logs/api_events.log")
    assert (s.job_backend, s.broker_url) == ("thread", None)


def test_the_queue_backend_needs_a_broker_and_takes_redis_url_by_default() -> None:
    with pytest.raises(ConfigError, match="NEXUS_JOB_BACKEND=queue needs a broker"):
        Settings.from_sources({"NEXUS_JOB_BACKEND": "queue"}, secrets_file=None)
    with pytest.raises(ConfigError, match="NEXUS_JOB_BACKEND must be one of thread, queue"):
        Settings.from_sources({"NEXUS_JOB_BACKEND": "celery"}, secrets_file=None)
    redis_only = {"NEXUS_JOB_BACKEND": "queue", "REDIS_URL": "redis://cache:6379/0"}
    assert Settings.from_sources(redis_only, secrets_file=None).broker_url == "redis://cache:6379/0"
    both = {**redis_only, "NEXUS_BROKER_URL": "redis://queue:6379/1"}
    assert Settings.from_sources(both, secrets_file=None).broker_url == "redis://queue:6379/1"


def test_a_gemini_key_makes_gemini_the_default_provider() -> None:
    s = Settings.from_sources({"GEMINI_API_KEY": "k-123"}, secrets_file=None)
    assert s.ai_provider == "gemini"


def test_database_url_defaults_under_the_data_dir() -> None:
    s = Settings.from_sources({"NEXUS_DATA_DIR": "/srv/nexus"}, secrets_file=None)
    assert s.database_url == "sqlite:////srv/nexus/nexus.db"


def test_environment_wins_over_the_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('GEMINI_MODEL = "from-secrets"\nGEMINI_API_KEY = "secret-key"\n')
    s = Settings.from_sources({"GEMINI_MODEL": "from-env"}, secrets_file=secrets)
    assert s.gemini_model == "from-env"
    assert s.gemini_api_key == "secret-key"


def test_secrets_never_appear_in_the_repr() -> None:
    s = Settings.from_sources(
        {"GEMINI_API_KEY": "AIza-very-secret", "NEXUS_COOKIE_KEY": "c" * 40}, secrets_file=None
    )
    assert "AIza-very-secret" not in repr(s)
    assert "c" * 40 not in repr(s)


def test_a_malformed_number_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="GEMINI_TIMEOUT_SECONDS"):
        Settings.from_sources({"GEMINI_TIMEOUT_SECONDS": "soon"}, secrets_file=None)


def test_unknown_environment_or_provider_is_refused() -> None:
    with pytest.raises(ConfigError, match="NEXUS_ENV"):
        Settings.from_sources({"NEXUS_ENV": "staging"}, secrets_file=None)
    with pytest.raises(ConfigError, match="NEXUS_AI_PROVIDER"):
        Settings.from_sources({"NEXUS_AI_PROVIDER": "llama"}, secrets_file=None)


@pytest.mark.parametrize("key", [None, "short-key"])
def test_production_refuses_to_start_without_a_strong_cookie_key(key: str | None) -> None:
    env = {"NEXUS_ENV": "production"}
    if key:
        env["NEXUS_COOKIE_KEY"] = key
    s = Settings.from_sources(env, secrets_file=None)
    with pytest.raises(ConfigError) as info:
        s.require_production_secrets()
    message = str(info.value)
    assert "NEXUS_COOKIE_KEY" in message and "\n" not in message


def test_production_with_a_strong_cookie_key_starts() -> None:
    s = Settings.from_sources(
        {"NEXUS_ENV": "production", "NEXUS_COOKIE_KEY": "k" * 48}, secrets_file=None
    )
    s.require_production_secrets()


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = README.read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    names = {name for name, _default, _help in Settings.documented()} | set(CONTRACT_SETTINGS)
    missing = sorted(names - documented)
    assert not missing, f"settings missing from README: {missing}"


def test_production_refuses_the_example_cookie_key() -> None:
    example = Path(__file__).resolve().parents[1] / ".streamlit" / "secrets.toml.example"
    s = Settings.from_sources({}, secrets_file=example)
    assert s.is_production
    with pytest.raises(ConfigError, match="NEXUS_COOKIE_KEY"):
        s.require_production_secrets()


def test_image_hosts_are_read_as_a_list_and_refuse_anything_but_host_names() -> None:
    settings = Settings.from_sources(
        environ={"NEXUS_IMAGE_HOSTS": " Images.Example.com, 127.0.0.2 ,[::1]"}, secrets_file=None
    )
    assert settings.allowed_image_hosts == ("images.example.com", "127.0.0.2", "[::1]")
    for bad in ("https://images.example.com", "a.example; script-src *", "a.example:8080"):
        with pytest.raises(ConfigError, match="NEXUS_IMAGE_HOSTS"):
            Settings.from_sources(environ={"NEXUS_IMAGE_HOSTS": bad}, secrets_file=None)
