"""The cache degrades to process memory while Valkey does not answer, and goes back to it afterwards."""
from __future__ import annotations

import socket
import time

from django.conf import settings

from labelapp.common.cache import FailoverRedisCache


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cache(location: str, retry: float = 60.0) -> FailoverRedisCache:
    return FailoverRedisCache(location, {"KEY_PREFIX": "failover-test", "OPTIONS": {
        "RETRY_SECONDS": retry, "socket_connect_timeout": 0.5, "socket_timeout": 0.5}})


def test_a_dead_server_costs_one_failed_call_then_the_process_memory_answers():
    cache = _cache(f"redis://127.0.0.1:{_closed_port()}/1")

    assert cache.get("missing", "default") == "default"  # the failure is absorbed
    assert cache.is_degraded
    started = time.monotonic()
    cache.set("key", {"a": 1}, 30)
    assert cache.get("key") == {"a": 1}
    assert cache.add("counter", 1) and cache.incr("counter", 2) == 3
    assert cache.get_many(["key"]) == {"key": {"a": 1}}
    cache.delete("key")
    assert cache.get("key") is None
    assert time.monotonic() - started < 0.1  # no connect attempt while degraded


def test_after_the_pause_the_server_is_used_again():
    live = f"{settings.CACHES['default']['LOCATION']}"
    cache = _cache(live, retry=0.2)
    cache._down_until = time.monotonic() + 0.2  # as if a call had just failed
    cache.set("only-local", 1)
    assert cache.is_degraded

    time.sleep(0.25)
    cache.set("shared", 2)
    assert not cache.is_degraded
    assert _cache(live).get("shared") == 2  # another process (another instance) sees it: it went to the server
    assert cache.get("only-local") is None  # what was written locally stays local
    cache.delete("shared")
