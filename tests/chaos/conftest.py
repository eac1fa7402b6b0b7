"""Chaos fixtures: a private Valkey and a private PostgreSQL that a test may stop and restart under the real app.

The app runs as it does in production, in processes of its own: gunicorn for the web, a Celery worker with an
embedded beat for the background work. Their broker, result backend and cache are a private Valkey on a free port
(never the shared one: stopping it must not disturb another test run), their database is this test's database —
or, for the database tests, a private PostgreSQL cluster holding a copy of it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("localservices", REPO / "bin" / "localservices.py")
localservices = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(localservices)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, *, timeout: float, interval: float = 0.3, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; return it, or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class PrivateValkey:
    """A valkey-server on a free port that the test can stop and start again (on the same port)."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(localservices._valkey_bin_dir() / "valkey-server"), "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), timeout=15, interval=0.05, what="valkey to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # an outage, not a clean shutdown
            self.process.wait(timeout=10)
        wait_for(lambda: not port_open(self.port), timeout=10, interval=0.05, what="valkey to stop")


class PrivatePostgres:
    """A PostgreSQL cluster from the same binaries as the project's, on a free port, restartable by the test."""

    def __init__(self):
        self.port = free_port()
        self.bin_dir, cluster_root = localservices._pg_layout()
        self.root = cluster_root.parent / f"chaos-{os.getpid()}-{self.port}"
        self.data = self.root / "data"

    def _run(self, *cmd: str) -> None:
        localservices._run([str(self.bin_dir / cmd[0]), *cmd[1:]], stdout=subprocess.DEVNULL)

    def init(self) -> None:
        self.root.mkdir(parents=True)
        (self.root / "socket").mkdir()
        if localservices._is_root():
            account = localservices._service_account()
            shutil.chown(self.root, account.pw_uid, account.pw_gid)
            shutil.chown(self.root / "socket", account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "labelapp", "--auth=trust", "--encoding=UTF8",
                  "--no-locale")
        conf = (f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root / 'socket'}'\nsynchronous_commit = off\nfsync = off\n")
        localservices._run(["sh", "-c", f"cat >> '{self.data / 'postgresql.conf'}'"], input=conf.encode())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def copy_database(self, *, source_port: int, source_name: str, name: str) -> None:
        """Create database `name` here holding a copy of `source_name` (schema and rows) from another server."""
        subprocess.run([str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "labelapp",
                        name], check=True)
        dump = subprocess.run([str(self.bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(source_port), "-U",
                               "labelapp", "--no-owner", source_name], check=True, capture_output=True)
        subprocess.run([str(self.bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "labelapp", name], input=dump.stdout, check=True,
                       stdout=subprocess.DEVNULL)


class App:
    """gunicorn + a Celery worker (with beat) as subprocesses; `http` is a requests session on the web server."""

    def __init__(self, *, env: dict[str, str], folder: Path):
        self.env, self.folder = env, folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.http = requests.Session()

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def start_web(self) -> None:
        self._spawn("web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
                            "--workers", "1", "--threads", "4", "--timeout", "60"])
        wait_for(lambda: port_open(self.port), timeout=60, what="gunicorn to listen")

    def start_worker(self, *, pool: str = "solo", name: str = "worker", beat: bool = True) -> None:
        queue = self.env["CELERY_DEFAULT_QUEUE"]
        self._spawn(name, [sys.executable, "-m", "celery", "-A", "config", "worker", *(["--beat"] if beat else []),
                           f"--pool={pool}",
                           "--concurrency=1", "--loglevel=INFO", f"--queues={queue}",
                           f"--hostname={queue}@localhost", "--without-gossip", "--without-mingle",
                           "-s", str(self.folder / "beat-schedule")])

    def kill(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.kill(name)
        self.processes.clear()

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.base + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.http.post(self.base + path, timeout=kwargs.pop("timeout", 30), **kwargs)


def app_env(*, database_url: str, redis_url: str, folder: Path) -> dict[str, str]:
    """The environment of a production-like app (DEBUG off) on the given database and Valkey."""
    queue = f"chaos-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "chaos-tests-only-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SESSION_COOKIE_SECURE": "0", "DJANGO_CSRF_COOKIE_SECURE": "0", "DJANGO_SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url, "DATABASE_CONN_MAX_AGE": "60", "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": f"{redis_url}/0", "CELERY_RESULT_BACKEND": f"{redis_url}/0", "CACHE_URL": f"{redis_url}/1",
        "CELERY_DEFAULT_QUEUE": queue, "CELERY_ML_QUEUE": queue, "CELERY_TASK_ALWAYS_EAGER": "0",
        "OUTBOX_RELAY_SECONDS": "2", "OUTBOX_BACKOFF_SECONDS": "1", "CACHE_RETRY_SECONDS": "1",
        "MEDIA_ROOT": str(folder / "media"), "ARTEFACT_ROOT": str(folder / "artefacts"),
    }
    for name in ("PYTEST_VERSION", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """Collected static files, once per session: with DEBUG off pages are rendered from the manifest."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO, check=True,
                   env={**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "chaos-tests-only-" + "x" * 40,
                        "DATABASE_URL": "postgres://unused@127.0.0.1:1/unused", "REDIS_URL": "redis://127.0.0.1:1",
                        "STATIC_ROOT": str(root)})
    return root


@pytest.fixture
def valkey(tmp_path):
    server = PrivateValkey(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chaos_app(transactional_db, valkey, static_root, tmp_path):
    """The app on this test's database, with the private Valkey as broker, result backend and cache."""
    from django.db import connection

    db = connection.settings_dict
    env = app_env(database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                  redis_url=valkey.url, folder=tmp_path)
    env["STATIC_ROOT"] = str(static_root)
    app = App(env=env, folder=tmp_path)
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def postgres(tmp_path):
    server = PrivatePostgres()
    server.init()
    server.start()
    yield server
    server.destroy()
