"""The counters' Redis commands on a Redis Cluster node, which refuses a script or a transaction
whose keys hash to different slots (CROSSSLOT): every kind of key the provider counts under works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from idp.counters.redis import RedisCounters
from tests.counter_contract import THREE_PER_MINUTE
from tests.counter_keys import every_counter_key
from tests.infra import redis_cluster_node


@pytest.fixture(scope="module")
def counters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCounters]:
    with redis_cluster_node(tmp_path_factory.mktemp("cluster")) as port:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            yield RedisCounters(client)
        finally:
            client.close()


@pytest.mark.parametrize("key", every_counter_key())
def test_every_counter_command_runs_on_a_cluster_node(counters: RedisCounters, key: str) -> None:
    assert counters.increment(key, timedelta(minutes=1)).count == 1
    assert counters.window(key).count == 1
    assert counters.reset(key) is False
    attempts = [counters.attempt(key, THREE_PER_MINUTE) for _ in range(4)]
    assert [a.locks for a in attempts[:3]] == [False, False, True] and not attempts[3].granted
    assert counters.locked_for(key) is not None
    assert counters.forget(key) == (True, False)
    counters.lock(key, timedelta(minutes=1))
    assert counters.reset(key) is True


def test_a_key_without_a_hash_tag_is_refused_with_its_lock(counters: RedisCounters) -> None:
    # What the cluster-safe names avoid (CROSSSLOT): a key and its lock in two slots, in one step.
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):
        counters.attempt("idp:LIMITER/203.0.113.7/signin", THREE_PER_MINUTE)
