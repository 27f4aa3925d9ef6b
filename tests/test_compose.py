"""docker-compose.yml and the Dockerfile, checked without a Docker engine so they cannot rot.

The compose file is parsed with PyYAML and its `${...}` variables are filled in the way
Compose does; the commands it runs are then resolved against this repository in a subprocess
with the very environment the containers get.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from testbed.env import env_list

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("migrate", "web", "worker", "worker-integrations", "beat")
SHELL_VARIABLES = {
    "SECRET_KEY": "compose-test-secret-" + "x" * 40,
    "POSTGRES_PASSWORD": "compose-test-password",
    "ALLOWED_HOSTS": "testbed.example.kr",
}

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(Exception):
    pass


def interpolate(value, variables: dict[str, str]):
    """Compose's interpolation: ${V}, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}, $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        current = variables.get(name)
        unset_or_empty = current is None or (
            op is not None and op.startswith(":") and current == ""
        )
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset_or_empty:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(variables: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, SHELL_VARIABLES if variables is None else variables)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def shell_text(service: dict) -> str:
    """The command as one line (`sh -c "a && b"` included), for searching."""
    return " ".join(command_of(service))


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    found = service.get("depends_on") or {}
    if isinstance(found, list):  # the short form waits for nothing but the start
        return dict.fromkeys(found, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in found.items()}


def image_major(image: str) -> int:
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    match = re.match(r"\d+", tag)
    assert match, f"pin {image!r} to a major version (e.g. :16), not {tag!r}"
    return int(match.group())


def option(command: list[str], *names: str) -> str | None:
    for index, part in enumerate(command):
        for name in names:
            if part == name and index + 1 < len(command):
                return command[index + 1]
            if part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        key: os.environ[key] for key in ("PATH", "HOME", "LANG", "SYSTEMROOT") if key in os.environ
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the compose file -------------------------------------------------------------------------


def test_it_declares_the_production_services(services):
    assert {"postgres", "redis", *APP_SERVICES} <= set(services)


def test_it_refuses_to_start_without_the_secrets():
    for name in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        variables = {key: value for key, value in SHELL_VARIABLES.items() if key != name}
        with pytest.raises(MissingVariable, match=name):
            load_compose(variables)


def test_it_serves_the_wsgi_app_from_gunicorn_with_threads(services):
    command = command_of(services["web"])
    assert command[0] == "gunicorn"
    assert command[1] in ("testbed.wsgi", "testbed.wsgi:application")
    assert option(command, "-b", "--bind") == "0.0.0.0:8000"
    # `Prefer: wait=N` long-polls must not pin a process: threads carry them.
    assert option(command, "-k", "--worker-class") == "gthread"
    assert int(option(command, "--threads") or 1) >= 4


def test_it_runs_a_celery_worker_and_one_beat(services):
    assert command_of(services["worker"])[:4] == ["celery", "-A", "testbed", "worker"]
    # Booking decisions never share a process with work that waits on other systems.
    assert option(command_of(services["worker"]), "-Q", "--queues") == "celery"
    integrations = command_of(services["worker-integrations"])
    assert option(integrations, "-Q", "--queues") == "integrations"
    assert command_of(services["beat"])[:4] == ["celery", "-A", "testbed", "beat"]
    assert "deploy" not in services["beat"] or services["beat"]["deploy"].get("replicas", 1) == 1


def test_work_that_waits_on_other_systems_goes_to_the_integrations_queue():
    from django.conf import settings

    from testbed.celery import app

    integrations = settings.TESTBED_INTEGRATIONS_QUEUE  # "integrations" in production
    for task in ("webhooks.deliver", "slurm.reconcile_cluster", "booking.send_booking_email"):
        assert app.amqp.router.route({}, task)["queue"].name == integrations, task
    default = app.conf.task_default_queue  # "celery" in production (tests use their own)
    for task in ("booking.allocate_shard", "booking.allocate_booking", "booking.sweep_pending"):
        assert app.amqp.router.route({}, task)["queue"].name == default, task


def test_it_migrates_and_loads_the_catalogue_before_anything_starts(services):
    text = shell_text(services["migrate"])
    migrate_at = text.find("manage.py migrate")
    seeds_at = text.find("manage.py load_seeds")
    assert 0 <= migrate_at < seeds_at, text
    assert "--demo" not in text, "production never loads the demo accounts"
    assert "&&" in text or ";" not in text, "seeds must not load after a failed migration"
    assert str(services["migrate"].get("restart", "no")) == "no"
    assert depends_on(services["migrate"]).get("postgres") == "service_healthy"
    for name in ("web", "worker", "beat"):
        waits_for = depends_on(services[name])
        assert waits_for.get("migrate") == "service_completed_successfully", name
        assert waits_for.get("postgres") == "service_healthy", name
        assert waits_for.get("redis") == "service_healthy", name


@pytest.mark.parametrize("name", APP_SERVICES)
def test_it_points_every_app_service_at_postgres_and_redis(services, name):
    env = environment_of(services[name])
    database = urlparse(env["DATABASE_URL"])
    assert database.scheme in ("postgres", "postgresql")
    assert database.hostname == "postgres" and "postgres" in services
    assert database.path.strip("/") == environment_of(services["postgres"])["POSTGRES_DB"]
    assert database.username == environment_of(services["postgres"])["POSTGRES_USER"]
    assert database.password == environment_of(services["postgres"])["POSTGRES_PASSWORD"]
    redis = urlparse(env["REDIS_URL"])
    assert redis.scheme in ("redis", "rediss")
    assert redis.hostname == "redis" and "redis" in services
    assert env["DEBUG"] == "0"
    assert env["SECRET_KEY"] == SHELL_VARIABLES["SECRET_KEY"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_it_runs_every_app_service_from_the_one_image(services, name):
    service = services[name]
    assert services["web"].get("build") in (".", {"context": "."})
    assert service.get("image") and service.get("image") == services["web"].get("image")


def test_it_allows_the_host_the_web_health_check_uses(services, monkeypatch):
    env = environment_of(services["web"])
    monkeypatch.setenv("ALLOWED_HOSTS", env["ALLOWED_HOSTS"])
    allowed = env_list("ALLOWED_HOSTS", [])
    assert "testbed.example.kr" in allowed
    check = " ".join(services["web"]["healthcheck"]["test"])
    host = re.search(r"'Host': '([^']+)'", check)
    assert host and host.group(1) in allowed, "the health check's Host must be in ALLOWED_HOSTS"


def test_it_uses_current_postgres_and_redis(services):
    assert services["postgres"]["image"].split(":")[0].endswith("postgres")
    assert image_major(services["postgres"]["image"]) >= 16
    assert services["redis"]["image"].split(":")[0].endswith("redis")
    assert image_major(services["redis"]["image"]) >= 7


def test_it_checks_the_health_of_the_database_the_broker_and_the_web(services):
    def probe(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return test if isinstance(test, str) else " ".join(test)

    assert "pg_isready" in probe("postgres")
    assert "redis-cli" in probe("redis") and "ping" in probe("redis")
    assert "/healthz" in probe("web") and ":8000" in probe("web")
    for service in services.values():
        for dependency, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], dependency


def test_it_keeps_the_database_on_a_named_volume(compose, services):
    mounts = services["postgres"]["volumes"]
    data = [m for m in mounts if str(m).split(":")[1:2] == ["/var/lib/postgresql/data"]]
    assert data, "PostgreSQL's data directory must be on a volume"
    volume = data[0].split(":")[0]
    assert volume in (compose.get("volumes") or {}), (
        f"declare the volume {volume!r} at the top level"
    )


# --- the Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_it_builds_a_slim_image_that_runs_as_a_user():
    instructions = dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert bases[-1].split()[0] == "python:3.11-slim"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"pip install (--?\S+ )*\.(\s|$)", runs), (
        "install the project with pip install ."
    )
    assert "manage.py collectstatic" in runs


def test_its_default_command_is_the_compose_web_command(services):
    cmd = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"][-1]
    command = json.loads(cmd)
    assert command[:2] == command_of(services["web"])[:2] == ["gunicorn", "testbed.wsgi"]


def test_its_build_time_collectstatic_settings_are_accepted(tmp_path):
    """The throwaway DEBUG=0 settings of the build step must satisfy the settings checks."""
    run = next(
        rest
        for keyword, rest in dockerfile_instructions()
        if keyword == "RUN" and "collectstatic" in rest
    )
    step = shlex.split(run[: run.index("python manage.py collectstatic")].rsplit("&&", 1)[-1])
    env = dict(word.split("=", 1) for word in step)
    assert env["DEBUG"] == "0" and env["SECRET_KEY"] and env["ALLOWED_HOSTS"]
    # Keep the step's scratch directory (its SQLite file, the broker's folders) inside tmp_path.
    scratch = env["TESTBED_VAR_DIR"]
    env = {key: value.replace(scratch, str(tmp_path)) for key, value in env.items()}
    env.update(DJANGO_SETTINGS_MODULE="testbed.settings", STATIC_ROOT=str(tmp_path / "static"))

    result = run_python(
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        env,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- the commands, resolved against this repository with the containers' environment --------


def test_it_starts_every_command_it_names_with_the_compose_environment(services):
    """gunicorn's module, Celery's app and the management commands all exist and load."""
    env = {**environment_of(services["web"]), "DJANGO_SETTINGS_MODULE": "testbed.settings"}
    app_module = command_of(services["web"])[1].split(":")
    code = f"""
import importlib, json
wsgi = importlib.import_module({app_module[0]!r})
assert callable(getattr(wsgi, {app_module[1] if len(app_module) > 1 else "application"!r}))
from celery.app.utils import find_app
celery_app = find_app("testbed")
from django.conf import settings
from django.core.management import get_commands
db = settings.DATABASES["default"]
print(json.dumps({{
    "celery_main": celery_app.main,
    "broker": celery_app.conf.broker_url,
    "commands": sorted(get_commands()),
    "engine": db["ENGINE"], "host": db["HOST"], "name": db["NAME"],
    "debug": settings.DEBUG, "cache": settings.CACHES["default"]["BACKEND"],
}}))
"""
    result = run_python(code, env)

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["celery_main"] == "testbed"
    assert found["broker"] == "redis://redis:6379/0"
    assert {"migrate", "load_seeds", "collectstatic"} <= set(found["commands"])
    assert (found["engine"], found["host"], found["name"]) == (
        "testbed.postgresql",
        "postgres",
        "testbed",
    )
    assert found["debug"] is False
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"


def test_it_passes_the_system_checks_with_the_compose_environment(services):
    env = {**environment_of(services["web"]), "DJANGO_SETTINGS_MODULE": "testbed.settings"}
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "ERROR"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_it_runs_production_behind_https_by_default(services):
    env = environment_of(services["web"])

    assert env["SECURE_SSL_REDIRECT"] == "1"
    assert int(env["SECURE_HSTS_SECONDS"]) >= 31_536_000
    assert env["SESSION_COOKIE_SECURE"] == env["CSRF_COOKIE_SECURE"] == "1"
    assert "TRUSTED_PROXIES" in env  # documented there for the proxy in front
