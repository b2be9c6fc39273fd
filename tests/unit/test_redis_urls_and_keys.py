"""The Sentinel form of ``IDP_REDIS_URL``, read and refused; and the counters' keys, which a Redis
Cluster can serve: every key a script or a transaction touches together hashes to one slot."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis
from redis.crc import key_slot
from redis.sentinel import SentinelConnectionPool

from idp.clock import FrozenClock
from idp.config import ConfigError, Settings
from idp.counters.connect import MasterDemoted, redis_client
from idp.counters.limits_storage import CounterStorage
from idp.counters.memory import MemoryCounters
from idp.counters.sentinel import InvalidSentinelURL, SentinelURL, parse_sentinel_url
from idp.counters.store import lock_key
from tests.counter_keys import every_counter_key


# --- the Sentinel URL ----------------------------------------------------------------------------
def test_the_documented_form_names_sentinels_master_and_database() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380/idp/2")
    assert parsed == SentinelURL(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)),
        master_name="idp",
        db=2,
        password="s@cret",
    )


def test_the_database_and_password_are_optional_and_the_port_defaults_to_26379() -> None:
    assert parse_sentinel_url("redis+sentinel://sentinel-a,[::1]:5000/main") == SentinelURL(
        sentinels=(("sentinel-a", 26379), ("::1", 5000)), master_name="main"
    )


def test_a_user_and_the_sentinels_own_password_are_read_apart_from_the_masters() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://idp:master-pw@s1:26379/idp/0?sentinel_password=sentinel%20pw&sentinel_username=watch"
    )
    assert (parsed.username, parsed.password) == ("idp", "master-pw")
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watch", "sentinel pw")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "names the master"),
        ("redis+sentinel://s1:26379/", "names the master"),
        ("redis+sentinel://s1:26379/idp/zero", "is a number"),
        ("redis+sentinel://s1:26379/idp/0/extra", "names the master"),
        ("redis+sentinel://s1:port/idp", "from 1 to 65535"),
        ("redis+sentinel://s1:70000/idp", "from 1 to 65535"),
        ("redis+sentinel://s1:26379,,s2:26379/idp", "host:port"),
        ("redis+sentinel://:pw@/idp", "host:port"),
        ("redis+sentinel://[::1/idp", "cannot read"),
        ("redis+sentinel://s1/idp?password=x", "unknown Sentinel URL option 'password'"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidSentinelURL, match=says):
        parse_sentinel_url(url)


def test_settings_refuse_a_malformed_sentinel_url_without_echoing_its_password() -> None:
    settings = replace(Settings(), redis_url="redis+sentinel://:hunter2-secret@s1:26379")
    with pytest.raises(ConfigError, match=r"^IDP_REDIS_URL: .*MASTER_NAME") as refused:
        settings.validate()
    assert "hunter2-secret" not in str(refused.value)


def test_settings_accept_the_sentinel_form_and_name_it_among_the_schemes() -> None:
    replace(Settings(), redis_url="redis+sentinel://:pw@s1:26379,s2:26379/idp/0").validate()
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        replace(Settings(), redis_url="sentinel://s1/idp").validate()


def test_a_sentinel_url_opens_a_master_client_with_short_timeouts_retrying_only_a_demotion() -> None:
    # Nothing is connected yet: the sentinels are asked at the first command.
    client = redis_client("redis+sentinel://:master-pw@127.0.0.1:1,127.0.0.1:2/idp/3?sentinel_password=sp")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.is_master
    assert pool.service_name == "idp"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "master-pw", 0.5)
    assert kwargs["retry"].get_retries() == 1
    assert kwargs["retry"]._supported_errors == (MasterDemoted,)  # not a timeout, not a refusal
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert all(s.connection_pool.connection_kwargs["password"] == "sp" for s in sentinels)
    assert all(s.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.5 for s in sentinels)
    # No sentinel answers on those ports: the command fails at once (the database counts then).
    with pytest.raises(redis.ConnectionError):
        client.ping()


# --- Cluster-safe keys ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", every_counter_key())
def test_a_key_and_its_lock_hash_to_one_slot(key: str) -> None:
    # The attempt script, forget and lock touch both in one step (idp/counters/redis.py).
    assert key_slot(key.encode()) == key_slot(lock_key(key).encode())


def test_limit_keys_stay_apart_however_they_are_spelt() -> None:
    limits = CounterStorage("idp-counters://", counters=MemoryCounters(FrozenClock()), prefix="idp:")
    spellings = ["a}b", "a%7Db", "a", "", "}"]
    assert len({limits.counter_key(key) for key in spellings}) == len(spellings)


def test_keys_of_different_values_spread_over_slots() -> None:
    # The hash tag is the value's own hash: tagging does not pile every key on one node.
    slots = {key_slot(key.encode()) for key in every_counter_key()}
    assert len(slots) >= len(every_counter_key()) - 2
