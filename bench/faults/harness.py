"""A private stack for one fault drill: PostgreSQL 15, Redis, gunicorn, Celery workers, a sweeper.

Drills kill and restart infrastructure, so they never touch the machine's shared PostgreSQL
(5432) or Redis (6379): each run starts its own PostgreSQL cluster (initdb in a temporary
directory, its own port, fsync on: durability as in production) and its own Redis
(`--appendonly yes`, as docker-compose runs it), migrates, loads a small catalogue
(bench/faults/catalogue.py), then starts gunicorn (gthread) and Celery workers (prefork) with
production settings, and a sweeper thread that queues `booking.sweep_pending` every
SWEEP_LOOP_SECONDS (what celery beat does, more often). `Stack` is a context manager: leaving
it kills every process group it started and removes the directory, on success or failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.faults.procs import Proc, alive, children, free_port, pids_owning_ports, wait_port

ROOT = Path(__file__).resolve().parent.parent.parent
PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
SWEEP_LOOP_SECONDS = 2.0  # how often the sweeper thread queues booking.sweep_pending
DB_NAME = "testbed_faults"


@dataclass
class Stack:
    """Everything one drill runs against; use as `with Stack(...) as stack:`."""

    name: str
    demand_hours: float = 400.0
    web_instances: int = 1
    web_processes: int = 2
    web_threads: int = 16
    workers: int = 1
    worker_concurrency: int = 2
    sweep_seconds: int = 6
    decide_delay_ms: int = 0
    flag_ttl_seconds: int = 10
    extra_env: dict[str, str] = field(default_factory=dict)
    tmp: Path = field(init=False)
    pg_port: int = field(init=False, default=0)
    redis_port: int = field(init=False, default=0)
    web_ports: list[int] = field(init=False, default_factory=list)
    webs: list[Proc] = field(init=False, default_factory=list)
    worker_procs: list[Proc] = field(init=False, default_factory=list)
    redis_proc: Proc | None = field(init=False, default=None)
    catalogue: dict = field(init=False, default_factory=dict)
    sweeps_sent: int = field(init=False, default=0)
    sweeps_failed: int = field(init=False, default=0)
    _sweeper_stop: threading.Event = field(init=False, default_factory=threading.Event)
    _sweeper: threading.Thread | None = field(init=False, default=None)
    _supervisor: threading.Thread | None = field(init=False, default=None)
    _worker_seq: int = field(init=False, default=0)
    crashes: list[str] = field(init=False, default_factory=list)
    _celery = None

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"faults-{self.name}-"))
        self.tmp.chmod(0o755)  # the postgres user must reach its data directory
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.pg_port = free_port(int(os.environ.get("FAULTS_PG_PORT", "55432")))
        self.redis_port = free_port(int(os.environ.get("FAULTS_REDIS_PORT", "6390")))
        self._init_postgres()
        self.pg_start()
        self.redis_start()
        self._manage("migrate", "-v0")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.faults.catalogue",
                "--demand-hours",
                str(self.demand_hours),
            ],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        )
        self.catalogue = json.loads(out.stdout.strip().splitlines()[-1])
        base = int(os.environ.get("FAULTS_WEB_PORT", "18765"))
        for _ in range(self.web_instances):
            port = free_port(base)
            base = port + 1
            self.web_ports.append(port)
            self.webs.append(self._web(port))
        for _ in range(self.workers):
            self.worker_start()
        for port in self.web_ports:
            if not wait_port(port, 60):
                raise RuntimeError(f"gunicorn on {port} did not listen in 60 s: {self.tail(port)}")
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sweeper", daemon=True)
        self._sweeper.start()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def close(self) -> None:
        self._sweeper_stop.set()
        for thread in (self._sweeper, self._supervisor):
            if thread is not None:
                thread.join(timeout=10)
        for proc in [*self.webs, *self.worker_procs]:
            proc.stop()
        if self.redis_proc is not None:
            self.redis_proc.stop()
        if (self.tmp / "pg" / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        if self._celery is not None:
            try:
                self._celery.close()
            except Exception:  # noqa: S110 - closing a dead broker connection
                pass
        if os.environ.get("FAULTS_KEEP"):
            print(f"FAULTS_KEEP: logs and data left in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- environment ---------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/{DB_NAME}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CELERY_BROKER_URL=self.redis_url,
            CELERY_TASK_DEFAULT_QUEUE="celery",
            DEBUG="0",
            SECRET_KEY="faults-only-secret-key-0123456789abcdefghijklmnop",  # noqa: S106
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SESSION_COOKIE_SECURE="0",
            CSRF_COOKIE_SECURE="0",
            SECURE_SSL_REDIRECT="0",
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="testbed.settings",
            TESTBED_PENDING_SWEEP_SECONDS=str(self.sweep_seconds),
            TESTBED_DECIDE_DELAY_MS=str(self.decide_delay_ms),
            TESTBED_ALLOCATION_FLAG_TTL=str(self.flag_ttl_seconds),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), check=True)

    # --- PostgreSQL ----------------------------------------------------------------------------
    def _as_postgres(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _init_postgres(self) -> None:
        data = self.tmp / "pg"
        data.mkdir()
        (self.tmp / "sock").mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(self.tmp / "sock", "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
        )
        # fsync and synchronous_commit stay on: a restart must not lose committed bookings.
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.pg_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.tmp / 'sock'}'\nmax_connections = 300\n"
                "shared_buffers = 64MB\nautovacuum = on\n"
            )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        log = self.tmp / "postgres.log"
        if os.geteuid() == 0 and not log.exists():
            log.touch()
            shutil.chown(log, "postgres", "postgres")
        return subprocess.run(
            self._as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.tmp / "pg"), "-l", str(log), *args]
            ),
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def pg_start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60")
        if not (self.tmp / "created").exists():
            import psycopg

            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres", autocommit=True
            ) as conn:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            (self.tmp / "created").touch()

    def pg_stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode, "-w")

    def pg_restart(self, mode: str = "fast") -> None:
        self._pg_ctl("restart", "-m", mode, "-w", "-t", "60")

    def ensure_running(self) -> None:
        """Start PostgreSQL and Redis again if a failed drill left them down."""
        if self._pg_ctl("status", check=False).returncode != 0:
            self.pg_start()
        if self.redis_proc is None or self.redis_proc.popen.poll() is not None:
            self.redis_start()

    def sql(self, query: str, params: tuple | dict = ()) -> list[tuple]:
        """Rows of one statement on the drill's database (a fresh connection each time)."""
        import psycopg

        dsn = f"postgresql://postgres@127.0.0.1:{self.pg_port}/{DB_NAME}"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    # --- Redis ---------------------------------------------------------------------------------
    def redis_start(self) -> None:
        folder = self.tmp / "redis"
        folder.mkdir(exist_ok=True)
        log = self.tmp / "redis.log"
        self.redis_proc = Proc(
            "redis",
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--dir",
                    str(folder),
                    "--protected-mode",
                    "no",
                ],
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            log,
        )
        if not wait_port(self.redis_port, 20):
            raise RuntimeError("private redis-server did not listen in 20 s")
        self.redis_wait_loaded()

    def redis_wait_loaded(self) -> None:
        import redis

        client = redis.Redis(port=self.redis_port, socket_timeout=2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:  # BusyLoadingError while the AOF is read
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not answer PING in 20 s")

    def redis_stop(self, *, hard: bool = False) -> None:
        """SIGTERM (Redis writes its append-only file and exits) or SIGKILL (it does not)."""
        assert self.redis_proc is not None
        if hard:
            self.redis_proc.kill_group(signal.SIGKILL)
        else:
            self.redis_proc.kill_group(signal.SIGTERM)
        self.redis_proc.popen.wait(timeout=30)

    def redis(self):
        import redis

        return redis.Redis(port=self.redis_port, socket_timeout=5, socket_connect_timeout=2)

    # --- web and workers -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.tmp / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole, never by name
        )
        return Proc(name, popen, log)

    def _web(self, port: int) -> Proc:
        return self._spawn(
            f"web-{port}",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "testbed.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-k",
                "gthread",
                "-w",
                str(self.web_processes),
                "--threads",
                str(self.web_threads),
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
        )

    def worker_start(self) -> Proc:
        self._worker_seq += 1
        proc = self._spawn(
            f"worker-{self._worker_seq}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "testbed",
                "worker",
                "-l",
                "warning",
                "-P",
                "prefork",
                "-c",
                str(self.worker_concurrency),
                "-n",
                f"faults-{self._worker_seq}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )
        self.worker_procs.append(proc)
        return proc

    def kill(self, proc: Proc) -> None:
        """kill -9 a worker's (or web's) whole process group, on purpose: it stays dead."""
        proc.killed = True
        proc.kill_group(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def live_worker(self) -> Proc:
        return next(p for p in reversed(self.worker_procs) if not p.killed)

    def live_workers(self) -> int:
        return sum(1 for p in self.worker_procs if not p.killed and p.popen.poll() is None)

    def _supervise(self) -> None:
        """docker-compose's `restart: unless-stopped`: a web or worker process that exits by
        itself is started again (and the crash is counted, with the log line that says why)."""
        while not self._sweeper_stop.wait(0.5):
            for proc in [*self.worker_procs, *self.webs]:
                if proc.killed or proc.popen.poll() is None or self._sweeper_stop.is_set():
                    continue
                proc.killed = True  # replaced: never restarted twice
                why = next(
                    (
                        line.strip()
                        for line in reversed(proc.log.read_text(errors="replace").splitlines())
                        if "CRITICAL" in line or "Unrecoverable" in line
                    ),
                    f"exit code {proc.popen.returncode}",
                )
                self.crashes.append(f"{proc.name} exited by itself ({why[:200]}); restarted")
                if proc in self.worker_procs:
                    self.worker_start()
                else:
                    port = int(proc.name.split("-")[1])
                    self.webs.append(self._web(port))

    def worker_children(self, proc: Proc) -> list[int]:
        return children(proc.pid)

    def in_flight_transactions(self) -> list[tuple[int, int]]:
        """(backend pid, client port) of the sessions idle or active inside a transaction."""
        rows = self.sql(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = %s "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid() AND client_port IS NOT NULL",
            (DB_NAME,),
        )
        return [(int(pid), int(port)) for pid, port in rows]

    def busy_worker_children(self) -> dict[int, int]:
        """Pool children of the live workers that hold an open transaction (child pid → port)."""
        kids = [pid for proc in self.worker_procs if alive(proc.pid) for pid in children(proc.pid)]
        ports = [port for _pid, port in self.in_flight_transactions()]
        return {pid: port for port, pid in pids_owning_ports(ports, kids).items()}

    # --- the sweeper (celery beat's role) ------------------------------------------------------
    def celery(self):
        """A bare Celery client on the private broker (no Django in the drill's process)."""
        if self._celery is None:
            from celery import Celery

            app = Celery("faults", broker=self.redis_url)
            app.conf.update(
                task_serializer="json",
                broker_connection_retry_on_startup=True,
                broker_connection_timeout=2,
            )
            self._celery = app
        return self._celery

    def send_task(self, name: str, args: list, **options) -> None:
        self.celery().send_task(
            name,
            args=args,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
            **options,
        )

    def _sweep_loop(self) -> None:
        while not self._sweeper_stop.wait(SWEEP_LOOP_SECONDS):
            try:
                self.send_task("booking.sweep_pending", [])
                self.sweeps_sent += 1
            except Exception:  # Redis is down: beat would fail the same way, and try again
                self.sweeps_failed += 1

    # --- diagnostics ---------------------------------------------------------------------------
    def tail(self, what: int | str, lines: int = 40) -> str:
        name = f"web-{what}" if isinstance(what, int) else what
        path = self.tmp / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def errors_in_logs(self, limit: int = 60) -> str:
        """Tracebacks and ERROR lines of the web and worker logs (printed when a drill fails)."""
        out: list[str] = []
        for path in sorted(self.tmp.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            hits = [
                line for line in text if "Error" in line or "ERROR" in line or "CRITICAL" in line
            ]
            if hits:
                out.append(f"--- {path.name}: {len(hits)} error lines, last ones:")
                out.extend(hits[-8:])
        return "\n".join(out[:limit])
