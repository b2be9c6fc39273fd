"""Counters in Redis: every process and host sees the same counts, each change one atomic script."""

from __future__ import annotations

from datetime import timedelta

import redis

from idp.counters.store import Attempt, Threshold, Window, lock_key

# KEYS[1] the count, KEYS[2] its lock; ARGV limit, window (ms), lock (ms).
# Returns {granted (0|1), count, locks (0|1), ms left on the lock}.
ATTEMPT = """
local left = redis.call('PTTL', KEYS[2])
if left ~= -2 then
  if left < 0 then left = tonumber(ARGV[3]) end
  return {0, 0, 0, left}
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {1, n, 1, tonumber(ARGV[3])}
end
return {1, n, 0, 0}
"""

# KEYS[1] the window's count; ARGV window (ms), amount. Returns {count, ms until the window ends}.
INCREMENT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


class RedisCounters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._attempt = client.register_script(ATTEMPT)
        self._increment = client.register_script(INCREMENT)

    def attempt(self, key: str, threshold: Threshold) -> Attempt:
        args = (threshold.limit, _ms(threshold.window), _ms(threshold.lock))
        granted, count, locks, left = (int(x) for x in self._attempt(keys=[key, lock_key(key)], args=args))
        if not granted:
            return Attempt(granted=False, locked_for=timedelta(milliseconds=left))
        return Attempt(granted=True, count=count, locks=bool(locks))

    def locked_for(self, key: str) -> timedelta | None:
        left = int(self.client.pttl(lock_key(key)))
        if left == -2:
            return None
        return timedelta(milliseconds=max(left, 0))

    def window(self, key: str) -> Window:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        value, left = pipe.execute()
        return Window(int(value or 0), timedelta(milliseconds=max(int(left), 0)))

    def reset(self, key: str) -> bool:
        return self.forget(key)[0]

    def forget(self, key: str) -> tuple[bool, bool]:
        """Delete the lock and the count of ``key``; return whether each was there."""
        pipe = self.client.pipeline()
        pipe.delete(lock_key(key))
        pipe.delete(key)
        was_locked, was_counted = pipe.execute()
        return bool(was_locked), bool(was_counted)

    def lock(self, key: str, duration: timedelta) -> None:
        """Lock ``key`` for ``duration`` (a lock the database kept); the count starts again after it."""
        pipe = self.client.pipeline()
        pipe.set(lock_key(key), 0, px=_ms(duration))
        pipe.delete(key)
        pipe.execute()

    def increment(self, key: str, window: timedelta, amount: int = 1) -> Window:
        count, left = (int(x) for x in self._increment(keys=[key], args=(_ms(window), amount)))
        return Window(count, timedelta(milliseconds=max(left, 0)))
