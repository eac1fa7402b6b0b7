"""Small shared helpers: logging, percentiles, memory probes, Postgres connections."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from dataclasses import dataclass, field

import numpy as np

T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:8.1f}s] {message}", flush=True)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def rss_gib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def loadavg() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def summarize(latencies_ms: list[float], recalls: list[float] | None = None) -> dict:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    out = {
        "n": int(len(lat)),
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "mean": float(lat.mean()) if len(lat) else float("nan"),
    }
    if recalls is not None and len(recalls):
        rec = np.asarray(recalls, dtype=np.float64)
        out |= {
            "recall": float(rec.mean()),
            "recall_p5": float(np.percentile(rec, 5)),
            "recall_min": float(rec.min()),
            "share_lt_095": float((rec < 0.95).mean()),
        }
    return out


def connect(dsn: str, *, autocommit: bool = True):
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def scalar(conn, sql: str, params=None):
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def execute(conn, sql: str, params=None) -> None:
    with conn.cursor() as cursor:
        cursor.execute(sql, params)


def pretty_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return str(value)


class Meta:
    """Key -> JSON values kept in the bench database (timings of builds, for --reuse)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        execute(conn, "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL, "
                      "updated_at timestamptz NOT NULL DEFAULT now())")

    def get(self, key: str):
        return scalar(self.conn, "SELECT value FROM bench_meta WHERE key = %s", [key])

    def put(self, key: str, value) -> None:
        execute(self.conn, "INSERT INTO bench_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                           "SET value = EXCLUDED.value, updated_at = now()", [key, json.dumps(value)])

    def drop(self, prefix: str) -> None:
        execute(self.conn, "DELETE FROM bench_meta WHERE key LIKE %s", [prefix + "%"])


@dataclass
class MemorySampler:
    """Samples memory while a build runs: Postgres backends' anonymous RSS + /dev/shm use, and system used."""

    interval_s: float = 2.0
    peak_pg_anon_gib: float = 0.0
    peak_shm_gib: float = 0.0
    peak_system_used_gib: float = 0.0
    baseline_shm_gib: float = 0.0
    baseline_system_used_gib: float = 0.0
    extra: list = field(default_factory=list)

    def _sample(self) -> tuple[float, float, float]:
        anon = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as handle:
                    text = handle.read()
            except OSError:
                continue
            if "\nName:\tpostgres" not in "\n" + text:
                continue
            for line in text.splitlines():
                if line.startswith("RssAnon:"):
                    anon += int(line.split()[1])
        stat = os.statvfs("/dev/shm")
        shm = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        with open("/proc/meminfo") as handle:
            info = {line.split(":")[0]: int(line.split()[1]) for line in handle}
        used = info["MemTotal"] - info["MemAvailable"]
        return anon / 1024 / 1024, shm / 1024**3, used / 1024 / 1024

    def __enter__(self):
        _, self.baseline_shm_gib, self.baseline_system_used_gib = self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            anon, shm, used = self._sample()
            self.peak_pg_anon_gib = max(self.peak_pg_anon_gib, anon)
            self.peak_shm_gib = max(self.peak_shm_gib, shm)
            self.peak_system_used_gib = max(self.peak_system_used_gib, used)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> dict:
        return {
            "peak_pg_anon_gib": round(self.peak_pg_anon_gib, 2),
            "peak_shm_gib": round(self.peak_shm_gib, 2),
            "shm_baseline_gib": round(self.baseline_shm_gib, 2),
            "peak_system_used_gib": round(self.peak_system_used_gib, 2),
            "system_used_baseline_gib": round(self.baseline_system_used_gib, 2),
        }
