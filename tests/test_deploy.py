"""The deployment files — compose.yaml, the Dockerfile, deploy/Caddyfile, deploy/nexus.env.example
and the systemd units in deploy/systemd — name only real settings and real `nexus` commands, probe
/health, give workers time to drain, and hold no secret.

Nothing here needs a Docker daemon or systemd running: compose.yaml is read as YAML, the commands
are parsed by the CLI's own parser, and the units are checked by ``systemd-analyze verify`` (when
installed) and by reading them. ``docker compose config`` runs only where Docker Compose exists.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from streamlit import config as streamlit_config

from nexus_core.ai.lanes import CHAT_LANE, LANE_NAMES, OVERDUE_GRACE_SECONDS
from nexus_core.cli import HANDLERS
from nexus_core.cli.parser import build_parser
from nexus_core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
CADDYFILE = REPO / "deploy" / "Caddyfile"
ENV_EXAMPLE = REPO / "deploy" / "nexus.env.example"
UNITS = REPO / "deploy" / "systemd"
DEPLOY_FILES = (COMPOSE, DOCKERFILE, CADDYFILE, ENV_EXAMPLE, *sorted(UNITS.iterdir()))
# Not Nexus settings, and what reads them.
OTHER_VARIABLES = {
    "POSTGRES_PASSWORD": "the postgres image, and compose.yaml's DATABASE_URL",
    "SITE_ADDRESS": "deploy/Caddyfile",
}
NEXUS_VARIABLE = re.compile(r"\bNEXUS_[A-Z0-9_]+\b")
STREAMLIT_VARIABLE = re.compile(r"\bSTREAMLIT_[A-Z0-9_]+\b")
STREAMLIT_OPTION = re.compile(r"--((?:server|browser|client|global|logger|runner|theme)\.\w+)")
# Example instances of the unit templates: a port, and lanes as `systemd-escape` writes them.
APP_INSTANCE = "8501"
WORKER_INSTANCE = "compare,test_set,eval"
DATA_DIR = "/var/lib/nexus"
PASSWORD_PLACEHOLDER = "CHANGE-ME"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}
DURATION = re.compile(r"(?:(\d+)m)?(?:(\d+)s)?$")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def nexus_services() -> dict[str, dict[str, Any]]:
    """The services that run the Nexus image."""
    return {name: s for name, s in services().items() if s.get("image") == "nexus-ai:latest"}


def workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in nexus_services().items() if s["command"][:2] == ["nexus", "worker"]}


def worker_lanes(service: dict[str, Any]) -> set[str]:
    command = service["command"]
    return set(command[command.index("--lanes") + 1].split(","))


def env_example() -> dict[str, str]:
    """NAME=value of every line of the example, commented out or not."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            pairs[match[1]] = match[2].strip()
    return pairs


def unit_entries(path: Path) -> Iterator[tuple[str, str, str]]:
    """(section, key, value) of every setting in a systemd unit file (keys may repeat)."""
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        yield section, key.strip(), value.strip()


def unit_values(path: Path, key: str) -> list[str]:
    return [value for _section, k, value in unit_entries(path) if k == key]


def instance_command(value: str) -> list[str]:
    """An ExecStart line with the example instance filled in."""
    return shlex.split(value.replace("%I", WORKER_INSTANCE).replace("%i", APP_INSTANCE))


def nexus_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, arguments after `nexus`) of every `nexus` command the deployment runs."""
    for name, service in services().items():
        command = service.get("command") or []
        if command[:1] == ["nexus"]:
            yield f"compose {name}", command[1:]
        probe = service.get("healthcheck", {}).get("test") or []
        if probe[1:2] == ["nexus"]:
            yield f"compose {name} healthcheck", probe[2:]
    for unit in sorted(UNITS.glob("*.service")):
        for value in unit_values(unit, "ExecStart"):
            command = instance_command(value)
            if Path(command[0]).name == "nexus":
                yield unit.name, command[1:]


def seconds(duration: str) -> int:
    """``120s``, ``2m`` or ``1m30s`` in seconds."""
    match = DURATION.match(duration.strip())
    assert match and duration.strip(), f"not a duration: {duration!r}"
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def drain_seconds() -> float:
    """How long a worker may take to stop: the job deadline (the example's, else the default)
    plus the grace after which a running job counts as stuck and is delivered again."""
    deadline = env_example().get("NEXUS_JOB_DEADLINE_SECONDS") or Settings().job_deadline_seconds
    return float(deadline) + OVERDUE_GRACE_SECONDS


# --- what runs where --------------------------------------------------------------------------


def test_compose_runs_the_database_redis_init_proxy_app_replicas_and_workers_for_every_lane() -> (
    None
):
    found = services()
    app = found["app"]
    lanes = [worker_lanes(w) for w in workers().values()]

    assert {"postgres", "redis", "migrate", "app", "proxy"} <= set(found)
    assert found["migrate"]["command"] == ["nexus", "init"]
    assert app["command"][:3] == ["streamlit", "run", "app.py"]
    assert app["deploy"]["replicas"] >= 2
    assert set().union(*lanes) == set(LANE_NAMES)
    assert {CHAT_LANE} in lanes, "chat replies need workers no prompt test can hold up"


def test_every_app_and_worker_starts_after_postgres_redis_and_nexus_init() -> None:
    wanted = {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    for name, service in nexus_services().items():
        if name == "migrate":
            continue
        conditions = {dep: how["condition"] for dep, how in service["depends_on"].items()}
        assert conditions == wanted, name
    assert services()["migrate"]["restart"] == "no"


def test_every_nexus_service_shares_the_database_redis_and_the_queue_backend() -> None:
    for name, service in nexus_services().items():
        environment = service["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in environment["DATABASE_URL"], name
        assert environment["REDIS_URL"].startswith("redis://redis:6379/"), name
        assert environment["NEXUS_JOB_BACKEND"] == "queue", name
        assert service["env_file"] == "deploy/nexus.env", name


def test_the_proxy_keeps_each_browser_on_one_replica_of_the_app_port() -> None:
    text = CADDYFILE.read_text()
    port = next(a.split("=")[1] for a in services()["app"]["command"] if "server.port" in a)

    assert re.search(rf"dynamic a \{{\s*name app\s*port {port}\b", text), text
    assert re.search(r"^\s*lb_policy cookie \w+", text, re.MULTILINE), "no sticky sessions"
    assert services()["proxy"]["volumes"][0] == "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro"


def test_each_long_running_service_and_unit_writes_its_own_event_log() -> None:
    running = {n: s for n, s in nexus_services().items() if n != "migrate"}
    hosts = [s["environment"].get("NEXUS_LOG_HOST") for s in running.values()]
    templates = [UNITS / "nexus-app@.service", UNITS / "nexus-worker@.service"]
    unit_hosts = [
        v for unit in templates for v in unit_values(unit, "Environment") if "NEXUS_LOG_HOST" in v
    ]

    assert None not in hosts and len(set(hosts)) == len(hosts), hosts
    assert len(unit_hosts) == 2 and all("%H" in v and "%i" in v.lower() for v in unit_hosts)


# --- settings and commands --------------------------------------------------------------------


def test_every_nexus_variable_in_the_deployment_files_is_a_setting() -> None:
    settings = {env for env, _default, _help in Settings.documented()}
    unknown = {
        (path.name, name)
        for path in DEPLOY_FILES
        for name in NEXUS_VARIABLE.findall(path.read_text())
        if name not in settings
    }
    assert not unknown, f"not settings of nexus_core/settings.py: {sorted(unknown)}"


def test_every_variable_of_the_env_example_is_read_by_nexus_streamlit_or_a_service() -> None:
    settings = {env for env, _default, _help in Settings.documented()}
    streamlit_vars = {o.env_var for o in streamlit_config.get_config_options().values()}
    unknown = set(env_example()) - settings - streamlit_vars - set(OTHER_VARIABLES)
    assert not unknown, f"read by nothing: {sorted(unknown)}"


def test_every_streamlit_variable_and_option_is_a_streamlit_config_option() -> None:
    options = streamlit_config.get_config_options()
    env_vars = {o.env_var for o in options.values()}
    text = "\n".join(path.read_text() for path in DEPLOY_FILES)

    assert STREAMLIT_OPTION.findall(text), "the app's command lines were not found"
    assert set(STREAMLIT_VARIABLE.findall(text)) <= env_vars
    assert set(STREAMLIT_OPTION.findall(text)) <= set(options)


def test_every_nexus_command_of_the_deployment_parses_with_the_cli_parser() -> None:
    commands = list(nexus_commands())
    parser = build_parser()
    for where, arguments in commands:
        try:
            parsed = parser.parse_args(arguments)
        except SystemExit:
            pytest.fail(f"{where}: `nexus {' '.join(arguments)}` is not a valid command")
        sub = getattr(parsed, f"{parsed.command}_command", None)
        assert (parsed.command, sub) in HANDLERS, where

    ran = {(where.split()[0], tuple(args[:1])) for where, args in commands}
    assert ("compose", ("init",)) in ran and ("compose", ("worker",)) in ran
    assert ("nexus-init.service", ("init",)) in ran
    assert ("nexus-worker@.service", ("worker",)) in ran


def test_the_worker_unit_takes_the_lanes_of_its_instance() -> None:
    [command] = [
        instance_command(v) for v in unit_values(UNITS / "nexus-worker@.service", "ExecStart")
    ]
    parsed = build_parser().parse_args(command[1:])
    assert parsed.lanes == tuple(WORKER_INSTANCE.split(","))


# --- health, stopping, secrets ----------------------------------------------------------------


def test_app_healthchecks_ask_health_on_the_app_port_and_workers_probe_their_heartbeat() -> None:
    app = services()["app"]
    port = next(a.split("=")[1] for a in app["command"] if "server.port" in a)
    dockerfile = DOCKERFILE.read_text()

    assert f"http://127.0.0.1:{port}/health" in " ".join(app["healthcheck"]["test"])
    assert re.search(rf"HEALTHCHECK .*\n?.*http://127\.0\.0\.1:{port}/health", dockerfile)
    for name, worker in workers().items():
        assert worker["healthcheck"]["test"] == ["CMD", "nexus", "health", "--worker"], name


def test_workers_get_longer_to_stop_than_a_drain_takes() -> None:
    drain = drain_seconds()
    for name, worker in workers().items():
        assert seconds(worker["stop_grace_period"]) >= drain, name
    [timeout] = unit_values(UNITS / "nexus-worker@.service", "TimeoutStopSec")
    assert int(timeout) >= drain
    assert drain > Settings().job_deadline_seconds  # the grace is counted


def test_the_env_example_holds_no_secret_and_git_ignores_the_real_file() -> None:
    secret = {f.metadata["env"] for f in dataclasses.fields(Settings) if not f.repr}
    secret |= {"POSTGRES_PASSWORD", "STREAMLIT_SERVER_COOKIE_SECRET"}
    example = env_example()
    urls = {name: urlsplit(value) for name, value in example.items() if "://" in value}

    assert {"NEXUS_COOKIE_KEY", "GEMINI_API_KEY", "POSTGRES_PASSWORD"} <= set(example)
    filled = {n for n in secret & set(example) if example[n] and n not in urls}
    assert not filled, f"secrets with a value: {sorted(filled)}"
    passwords = {n: u.password for n, u in urls.items() if u.password}
    assert set(passwords.values()) <= {PASSWORD_PLACEHOLDER}, passwords
    assert "/deploy/nexus.env" in (REPO / ".gitignore").read_text().splitlines()
    assert "deploy" in (REPO / ".dockerignore").read_text().splitlines()


def test_the_image_runs_as_an_unprivileged_user_with_the_data_dir_as_a_volume() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER nexus$", dockerfile, re.MULTILINE)
    assert "NEXUS_DATA_DIR=/data" in dockerfile
    for name, service in nexus_services().items():
        assert "nexus-data:/data" in service["volumes"], name


# --- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", sorted(UNITS.glob("*.service")), ids=lambda p: p.name)
def test_every_unit_is_hardened_and_reads_the_environment_file(unit: Path) -> None:
    entries = {(section, key): value for section, key, value in unit_entries(unit)}

    for key, value in HARDENING.items():
        assert entries.get(("Service", key)) == value, key
    assert DATA_DIR in entries[("Service", "ReadWritePaths")].split()
    assert f"NEXUS_DATA_DIR={DATA_DIR}" in unit_values(unit, "Environment")
    assert entries[("Service", "EnvironmentFile")] == "/etc/nexus/nexus.env"
    assert entries[("Service", "User")] == "nexus"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the units were checked by reading them")
    # Point ExecStart at executables that exist here (verify checks them) and instantiate the
    # templates with the example instances.
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "nexus").is_file():
        pytest.skip("the `nexus` and `streamlit` scripts are not installed beside each other")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/nexus/.venv/bin/", f"{bin_dir}/")
        (tmp_path / unit.name).write_text(text)
    instances = {
        "nexus-app@.service": f"nexus-app@{APP_INSTANCE}.service",
        "nexus-worker@.service": "nexus-worker@compare\\x2ctest_set\\x2ceval.service",
    }
    for template, instance in instances.items():
        (tmp_path / instance).symlink_to(tmp_path / template)
    names = [u.name for u in UNITS.iterdir() if "@." not in u.name] + list(instances.values())

    result = subprocess.run(
        [analyze, "verify", "--man=no", *(f"./{name}" for name in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed; compose.yaml was checked as YAML")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        pytest.skip(f"docker has no compose plugin here: {version.stderr.strip()[:120]}")
    # A copy of the project with a filled-in env file (compose refuses a missing one).
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    shutil.copy(CADDYFILE, tmp_path / "deploy" / CADDYFILE.name)
    env_file = tmp_path / "deploy" / "nexus.env"
    env_file.write_text(
        ENV_EXAMPLE.read_text().replace("POSTGRES_PASSWORD=", "POSTGRES_PASSWORD=x")
    )
    result = subprocess.run(
        [docker, "compose", "--env-file", str(env_file), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
