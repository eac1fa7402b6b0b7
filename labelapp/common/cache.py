"""A cache that degrades instead of failing: Valkey/Redis when it answers, this process's memory when it does not.

Django's Redis cache raises when the server is away, and whatever reads the cache fails with it — the similar
API's throttle, the labelling type-ahead. `FailoverRedisCache` catches the connection failure, marks the server
down for CACHE_RETRY_SECONDS (so requests do not each wait for a connect timeout) and serves every call from a
local in-memory cache meanwhile: pages stay up, cached answers are recomputed once per process, and throttles
count per process instead of across processes (a throttle rate of N/min becomes N/min per web process until the
cache is back). After the pause the next call tries the server again; what was written locally is not copied
back (it is a cache: the server's own entries, possibly a little stale, win again).
"""

from __future__ import annotations

import logging
import time

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)
DEFAULT_RETRY_SECONDS = 5.0


class FailoverRedisCache(RedisCache):
    """RedisCache that falls back to a per-process LocMemCache while the server does not answer.

    OPTIONS: RETRY_SECONDS (how long to stay on the local cache after a failure; default 5) besides RedisCache's
    own (socket_connect_timeout and socket_timeout keep a dead server from costing seconds per call).
    """

    def __init__(self, server, params):
        params = dict(params)
        options = dict(params.get("OPTIONS") or {})
        self.retry_seconds = float(options.pop("RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
        params["OPTIONS"] = options
        super().__init__(server, params)
        self._local = LocMemCache(f"failover-{id(self)}", {
            "TIMEOUT": params.get("TIMEOUT", 300), "KEY_PREFIX": params.get("KEY_PREFIX", ""),
            "VERSION": params.get("VERSION", 1), "OPTIONS": {"MAX_ENTRIES": 10_000}})
        self._down_until = 0.0

    @property
    def is_degraded(self) -> bool:
        """True while calls go to the local cache."""
        return time.monotonic() < self._down_until

    def _call(self, name: str, *args, **kwargs):
        if not self.is_degraded:
            try:
                return getattr(super(), name)(*args, **kwargs)
            except UNAVAILABLE as error:
                self._down_until = time.monotonic() + self.retry_seconds
                logger.warning("cache: %s failed (%s); serving from process memory for %.0f s",
                               name, error, self.retry_seconds)
        return getattr(self._local, name)(*args, **kwargs)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("add", key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._call("get", key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", key, timeout, version)

    def delete(self, key, version=None):
        return self._call("delete", key, version)

    def get_many(self, keys, version=None):
        return self._call("get_many", keys, version)

    def has_key(self, key, version=None):
        return self._call("has_key", key, version)

    def incr(self, key, delta=1, version=None):
        return self._call("incr", key, delta, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", data, timeout, version)

    def delete_many(self, keys, version=None):
        return self._call("delete_many", keys, version)

    def clear(self):
        self._local.clear()
        return self._call("clear")
