"""Counter keys of every kind the provider counts under, made by the code that makes them: the
unit tests check their hash slots, the Redis Cluster test runs every counter command on them."""

from __future__ import annotations

from idp.accounts.lockout import Lockout
from idp.clock import FrozenClock
from idp.counters.limits_storage import CounterStorage
from idp.counters.memory import MemoryCounters
from idp.counters.store import Keys
from idp.policy import LockoutPolicy
from idp.students.access import StudentAccess


def every_counter_key() -> list[str]:
    keys = Keys.derive("idp:", "a-secret-key")
    lockout = Lockout(MemoryCounters(FrozenClock()), keys, LockoutPolicy())
    access = StudentAccess.__new__(StudentAccess)  # its key names need only the keys
    access.keys = keys
    limits = CounterStorage("idp-counters://", counters=MemoryCounters(FrozenClock()), prefix="idp:")
    return [
        lockout.user_key("dana.rivera"),
        lockout.user_key("{dana}"),
        lockout.device_key("account-id", "device-id"),
        access.access_id_key("ACCESS-1"),
        access.address_key("203.0.113.7"),
        access.address_key(None),
        limits.counter_key("LIMITER/203.0.113.7/signin/100/1/minute"),
        limits.counter_key("LIMITER/2001:db8::1/token/6000/1/minute"),
        limits.counter_key("odd{key}with}braces{"),
        limits.counter_key("}starts-with-a-brace"),
        limits.counter_key("%7D"),
        limits.counter_key(""),
    ]
