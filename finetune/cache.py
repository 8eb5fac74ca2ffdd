"""Django's Redis cache with one Redis client and connection pool per process instead of one per call or request.

Two costs of Django's RedisCache show under load. It builds a new `redis.Redis` object for every operation, and
redis-py 8 fills a 169-entry response-callback table in each constructor: 383 us per `cache.get` on the dev machine,
169 us with a reused client. And Django keeps one cache backend per thread and async context, so under ASGI each
request got a new backend, a new connection pool and a new TCP connection to Redis (whose set-up reads package
metadata to name the client). Here every backend instance of a process shares one client (the pool is thread-safe and
fork-aware). Throttles, the token-cache epoch, the backfill pages and the dashboard caches all go through here.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients.setdefault(index, self._client(connection_pool=self._get_connection_pool(write)))
        return client


_shared: dict[str, ReusedClientRedisCacheClient] = {}


class FastRedisCache(RedisCache):
    """settings.CACHES backend: Django's RedisCache on one ReusedClientRedisCacheClient per process and location."""

    @property
    def _cache(self) -> ReusedClientRedisCacheClient:  # type: ignore[override]
        key = repr((self._servers, sorted(self._options.items())))
        client = _shared.get(key)
        if client is None:
            client = _shared.setdefault(key, ReusedClientRedisCacheClient(self._servers, **self._options))
        return client
