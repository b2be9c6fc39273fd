"""Key rotation on a folder with a frozen clock: publish first, sign later, prune after the grace time."""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc.errors import InvalidKeyIdError

from idp.clock import FrozenClock, SystemClock
from idp.config import Settings
from idp.keys import files as files_module
from idp.keys import ring, store
from idp.keys.durations import InvalidDuration, describe, parse_duration
from idp.keys.ring import KeyRing
from idp.keys.rotation import (
    KeyChangeRefused,
    KeyRotation,
    KeyStateRefused,
    KeyTimings,
    NextKeyTooYoung,
    UnknownKey,
)
from idp.keys.store import MANIFEST, KeyRecord, read_manifest

TIMINGS = KeyTimings(
    jwks_max_age=timedelta(minutes=5),
    check_interval=timedelta(seconds=2),
    longest_token_life=timedelta(minutes=10),
)
LEAD = timedelta(minutes=10, seconds=2)
GRACE = timedelta(minutes=15, seconds=2)


@pytest.fixture
def keys_dir(tmp_path: Path, clock: FrozenClock) -> Path:
    """A first key set: an active and a next key per algorithm, all made now."""
    folder = tmp_path / "keys"
    store.ensure_key_set(folder, clock=clock, passphrase=None)
    return folder


@pytest.fixture
def keys(keys_dir: Path, clock: FrozenClock) -> KeyRotation:
    return KeyRotation(keys_dir, clock=clock, timings=TIMINGS)


def key(keys_dir: Path, alg: str, state: str) -> KeyRecord:
    (record,) = [r for r in read_manifest(keys_dir) if r.alg == alg and r.state == state]
    return record


def states(keys_dir: Path) -> dict[str, str]:
    return {r.kid: r.state for r in read_manifest(keys_dir)}


def snapshot(keys_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in keys_dir.iterdir() if p.name != store.LOCK_FILE}


# --- timings -------------------------------------------------------------------------------
def test_lead_is_twice_the_jwks_cache_time_plus_the_check_interval():
    settings = Settings(
        jwks_max_age=300, keys_check_seconds=2, id_token_seconds=600, access_token_seconds=900
    )

    timings = KeyTimings.from_settings(settings)

    assert timings.lead == timedelta(seconds=2 * 300 + 2)
    # The longest life of a token we sign (here the access token's), plus cache time and check interval.
    assert timings.grace == timedelta(seconds=900 + 300 + 2)
    assert TIMINGS.lead == LEAD and TIMINGS.grace == GRACE


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
    ],
)
def test_durations_are_read_as_operators_write_them(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "90", "d", "1.5d", "-1d", "0d", "90 days", "1w", "3M"])
def test_malformed_durations_are_refused_with_the_accepted_forms(text):
    with pytest.raises(InvalidDuration, match="90d"):
        parse_duration(text)


def test_durations_are_described_in_their_two_largest_units():
    assert describe(timedelta(minutes=10, seconds=2)) == "10m 2s"
    assert describe(timedelta(days=91, hours=3, minutes=1)) == "91d 3h"


# --- rotate --------------------------------------------------------------------------------
def test_rotation_after_the_lead_time_promotes_next_retires_active_and_publishes_a_new_next(
    keys, keys_dir, clock
):
    old_active, old_next = key(keys_dir, "RS256", "active"), key(keys_dir, "RS256", "next")
    clock.advance(LEAD)

    changes = keys.rotate(["RS256"])

    new_active, retired, new_next = (
        key(keys_dir, "RS256", "active"),
        key(keys_dir, "RS256", "retired"),
        key(keys_dir, "RS256", "next"),
    )
    assert new_active.kid == old_next.kid and new_active.activated_at == clock.now()
    assert retired.kid == old_active.kid and retired.retired_at == clock.now()
    assert new_next.kid not in {old_active.kid, old_next.kid} and new_next.created_at == clock.now()
    assert [(e.name, e.kid, dict(e.details)) for e in changes.events] == [
        ("key.rotated", old_next.kid, {"next": new_next.kid, "retired": old_active.kid})
    ]
    assert changes.kept == ((retired, clock.now() + GRACE),)
    assert stat.S_IMODE((keys_dir / new_next.file).stat().st_mode) == 0o600


def test_rotation_without_alg_rotates_every_algorithm_in_one_manifest_write(keys, keys_dir, clock):
    clock.advance(LEAD)

    changes = keys.rotate()

    assert sorted(e.alg for e in changes.events) == ["ES256", "RS256"]
    assert sorted(states(keys_dir).values()) == ["active", "active", "next", "next", "retired", "retired"]


def test_rotation_touches_only_the_algorithm_asked_for(keys, keys_dir, clock):
    es256_before = {r.kid: r for r in read_manifest(keys_dir) if r.alg == "ES256"}
    clock.advance(LEAD)

    keys.rotate(["RS256"])

    assert {r.kid: r for r in read_manifest(keys_dir) if r.alg == "ES256"} == es256_before


def test_next_key_younger_than_the_lead_time_is_refused_and_nothing_changes(keys, keys_dir, clock):
    upcoming = key(keys_dir, "RS256", "next")
    clock.advance(LEAD - timedelta(seconds=1))
    before = snapshot(keys_dir)

    with pytest.raises(NextKeyTooYoung, match="--force") as refused:
        keys.rotate(["RS256"])

    assert refused.value.ready_at == upcoming.created_at + LEAD
    assert upcoming.kid in str(refused.value) and "10m 2s" in str(refused.value)
    assert snapshot(keys_dir) == before


def test_force_promotes_a_next_key_younger_than_the_lead_time(keys, keys_dir):
    upcoming = key(keys_dir, "RS256", "next")

    changes = keys.rotate(["RS256"], force=True)

    assert key(keys_dir, "RS256", "active").kid == upcoming.kid
    assert changes.events[0].details["forced_by"] == "--force"


def test_if_older_than_skips_an_active_key_younger_than_that(keys, keys_dir, clock):
    clock.advance(timedelta(days=89))
    before = snapshot(keys_dir)

    changes = keys.rotate(if_older_than=timedelta(days=90))

    assert changes.events == ()
    assert [s.alg for s in changes.skipped] == ["RS256", "ES256"]
    assert "89d old, younger than 90d" in changes.skipped[0].reason
    assert snapshot(keys_dir) == before  # not even rewritten: no process reloads for nothing


def test_if_older_than_rotates_an_active_key_older_than_that_and_then_waits_again(keys, keys_dir, clock):
    clock.advance(timedelta(days=90))
    first = keys.rotate(["RS256"], if_older_than=timedelta(days=90))
    clock.advance(timedelta(days=1))

    second = keys.rotate(["RS256"], if_older_than=timedelta(days=90))

    assert [e.name for e in first.events] == ["key.rotated"]
    assert second.events == () and "1d old" in second.skipped[0].reason


def test_if_older_than_waits_quietly_for_a_next_key_still_in_its_lead_time(keys, keys_dir, clock):
    clock.advance(timedelta(days=100))
    keys.revoke(key(keys_dir, "RS256", "next").kid)  # its replacement is published now
    clock.advance(timedelta(minutes=1))

    changes = keys.rotate(["RS256"], if_older_than=timedelta(days=90))

    assert changes.events == ()
    assert "can sign from" in changes.skipped[0].reason


def test_rotation_without_a_next_key_publishes_one_and_promotes_it_after_the_lead_time(keys, keys_dir, clock):
    # A key set from before next keys existed: active keys only.
    write_only_active_keys(keys_dir)
    active = key(keys_dir, "RS256", "active")

    first = keys.rotate(["RS256"])
    published = key(keys_dir, "RS256", "next")
    clock.advance(LEAD)
    second = keys.rotate(["RS256"])

    assert [(e.name, e.kid) for e in first.events] == [("key.published", published.kid)]
    assert "rotate again" in first.skipped[0].reason
    assert key(keys_dir, "RS256", "active").kid == published.kid
    assert key(keys_dir, "RS256", "retired").kid == active.kid
    assert [e.name for e in second.events] == ["key.rotated"]


def test_forced_rotation_without_a_next_key_makes_a_key_that_signs_at_once(keys, keys_dir):
    write_only_active_keys(keys_dir)
    active = key(keys_dir, "RS256", "active")

    keys.rotate(["RS256"], force=True)

    assert key(keys_dir, "RS256", "retired").kid == active.kid
    assert key(keys_dir, "RS256", "active").kid != active.kid
    assert key(keys_dir, "RS256", "next")


def test_es256_can_be_added_to_a_set_without_it(tmp_path, clock):
    store.ensure_key_set(tmp_path, clock=clock, passphrase=None, algorithms=["RS256"])
    keys = KeyRotation(tmp_path, clock=clock, timings=TIMINGS)

    keys.rotate(["ES256"])
    clock.advance(LEAD)
    keys.rotate(["ES256"])

    assert {r.alg for r in read_manifest(tmp_path) if r.state == "active"} == {"RS256", "ES256"}


def test_unsupported_algorithm_is_refused(keys):
    with pytest.raises(KeyChangeRefused, match="HS256"):
        keys.rotate(["HS256"])


def write_only_active_keys(keys_dir: Path) -> None:
    records = read_manifest(keys_dir)
    store.write_manifest(keys_dir, [r for r in records if r.state == "active"])
    for record in records:
        if record.state == "next":
            (keys_dir / record.file).unlink()


# --- retire --------------------------------------------------------------------------------
def test_retiring_the_next_key_keeps_it_published_and_publishes_another(keys, keys_dir, clock):
    upcoming = key(keys_dir, "RS256", "next")

    changes = keys.retire(upcoming.kid)

    assert states(keys_dir)[upcoming.kid] == "retired"
    assert key(keys_dir, "RS256", "retired").retired_at == clock.now()
    assert key(keys_dir, "RS256", "next").kid != upcoming.kid
    assert [e.name for e in changes.events] == ["key.retired", "key.published"]


def test_retiring_the_active_key_is_refused_in_favour_of_rotate(keys, keys_dir):
    active = key(keys_dir, "RS256", "active")
    before = snapshot(keys_dir)

    with pytest.raises(KeyStateRefused, match="idp keys rotate --alg RS256"):
        keys.retire(active.kid)

    assert snapshot(keys_dir) == before


def test_retiring_a_retired_key_is_refused(keys, keys_dir, clock):
    clock.advance(LEAD)
    keys.rotate(["RS256"])

    with pytest.raises(KeyStateRefused, match="already retired"):
        keys.retire(key(keys_dir, "RS256", "retired").kid)


@pytest.mark.parametrize("command", ["retire", "revoke"])
def test_unknown_kid_is_refused_and_nothing_changes(keys, keys_dir, command):
    before = snapshot(keys_dir)

    with pytest.raises(UnknownKey, match="rs256-nope"):
        getattr(keys, command)("rs256-nope")

    assert snapshot(keys_dir) == before


# --- revoke --------------------------------------------------------------------------------
def test_revoking_the_active_key_promotes_the_next_key_at_once(keys, keys_dir, clock):
    active, upcoming = key(keys_dir, "RS256", "active"), key(keys_dir, "RS256", "next")

    changes = keys.revoke(active.kid)  # however young the next key is: the active one is compromised

    revoked = key(keys_dir, "RS256", "revoked")
    assert revoked.kid == active.kid and revoked.revoked_at == clock.now()
    assert key(keys_dir, "RS256", "active").kid == upcoming.kid
    assert key(keys_dir, "RS256", "next").kid not in {active.kid, upcoming.kid}
    assert not (keys_dir / active.file).exists()  # the compromised private key is deleted
    assert [(e.name, e.kid) for e in changes.events] == [
        ("key.revoked", active.kid),
        ("key.rotated", upcoming.kid),
    ]
    assert changes.events[1].details["forced_by"] == "revocation"


def test_revoking_the_only_rs256_key_makes_a_new_one_first(keys, keys_dir):
    write_only_active_keys(keys_dir)
    active = key(keys_dir, "RS256", "active")

    keys.revoke(active.kid)

    assert key(keys_dir, "RS256", "active").kid != active.kid
    assert key(keys_dir, "RS256", "next")
    assert KeyRing(keys_dir, clock=SystemClock()).sign({"sub": "x"})


def test_token_signed_by_a_revoked_key_fails_verification(keys, keys_dir, clock):
    ring = KeyRing(keys_dir, clock=clock, check_seconds=0)
    token = ring.sign({"sub": "account-1"})
    active = key(keys_dir, "RS256", "active")
    assert ring.verify(token).claims == {"sub": "account-1"}

    keys.revoke(active.kid)

    with pytest.raises(InvalidKeyIdError):
        ring.verify(token)
    assert active.kid not in {k["kid"] for k in ring.public_jwks()["keys"]}
    assert ring.verify(ring.sign({"sub": "account-1"})).claims == {"sub": "account-1"}


@pytest.mark.parametrize("state", ["next", "retired"])
def test_revoking_a_key_that_does_not_sign_unpublishes_it(keys, keys_dir, clock, state):
    clock.advance(LEAD)
    keys.rotate(["RS256"])
    target = key(keys_dir, "RS256", state)
    active = key(keys_dir, "RS256", "active")

    keys.revoke(target.kid)

    ring = KeyRing(keys_dir, clock=clock)
    assert target.kid not in {k["kid"] for k in ring.public_jwks()["keys"]}
    assert key(keys_dir, "RS256", "active") == active
    assert key(keys_dir, "RS256", "next")  # a revoked next key is replaced


def test_revoking_twice_is_refused(keys, keys_dir):
    upcoming = key(keys_dir, "ES256", "next")
    keys.revoke(upcoming.kid)

    with pytest.raises(KeyStateRefused, match="already revoked"):
        keys.revoke(upcoming.kid)


# --- prune ---------------------------------------------------------------------------------
def test_prune_keeps_a_retired_key_until_its_grace_time_ends(keys, keys_dir, clock):
    clock.advance(LEAD)
    keys.rotate(["RS256"])
    retired = key(keys_dir, "RS256", "retired")
    clock.advance(GRACE - timedelta(seconds=1))

    early = keys.prune()
    clock.advance(timedelta(seconds=1))
    on_time = keys.prune()

    assert early.events == () and early.kept == ((retired, retired.retired_at + GRACE),)
    assert [(e.name, e.kid) for e in on_time.events] == [("key.pruned", retired.kid)]
    assert retired.kid not in states(keys_dir)
    assert not (keys_dir / retired.file).exists()


def test_prune_removes_a_revoked_key_record_after_the_grace_time(keys, keys_dir, clock):
    upcoming = key(keys_dir, "RS256", "next")
    keys.revoke(upcoming.kid)
    clock.advance(GRACE)

    changes = keys.prune()

    assert [(e.name, e.kid, e.details["state"]) for e in changes.events] == [
        ("key.pruned", upcoming.kid, "revoked")
    ]
    assert upcoming.kid not in states(keys_dir)


def test_prune_starts_the_grace_time_of_a_retired_key_without_a_retirement_time(keys, keys_dir, clock):
    records = read_manifest(keys_dir)
    upcoming = key(keys_dir, "ES256", "next")
    # A hand-made or old manifest: retired, but since when is unknown.
    store.write_manifest(
        keys_dir,
        [KeyRecord(r.kid, r.alg, "retired", r.created_at, r.file) if r == upcoming else r for r in records],
    )
    clock.advance(timedelta(days=365))

    first = keys.prune()
    clock.advance(GRACE)
    second = keys.prune()

    assert first.events == ()
    assert [(e.name, e.kid) for e in second.events] == [("key.pruned", upcoming.kid)]


def test_nothing_to_prune_leaves_the_manifest_untouched(keys, keys_dir):
    before = (keys_dir / MANIFEST).stat()

    changes = keys.prune()

    assert changes.events == () and changes.kept == ()
    assert (keys_dir / MANIFEST).stat().st_ino == before.st_ino


# --- how changes are written ---------------------------------------------------------------
def test_failed_manifest_write_leaves_the_set_and_no_new_key_file(keys, keys_dir, clock, monkeypatch):
    clock.advance(LEAD)
    before = snapshot(keys_dir)

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module, "write_manifest", full_disk)
    with pytest.raises(OSError, match="No space"):
        keys.rotate(["RS256"])

    assert snapshot(keys_dir) == before


def test_new_keys_are_encrypted_with_the_passphrase(tmp_path, clock):
    store.ensure_key_set(tmp_path, clock=clock, passphrase="pass phrase")
    keys = KeyRotation(tmp_path, clock=clock, timings=TIMINGS, passphrase="pass phrase")
    clock.advance(LEAD)

    keys.rotate()

    for record in read_manifest(tmp_path):
        assert b"ENCRYPTED" in (tmp_path / record.file).read_bytes()
    assert len(ring.load_key_set(tmp_path, "pass phrase").private) == 6


def test_manifest_changed_on_disk_is_read_again_before_each_change(keys, keys_dir, clock):
    other = KeyRotation(keys_dir, clock=clock, timings=TIMINGS)
    clock.advance(LEAD)
    other.rotate(["RS256"])  # another operator, another process: `keys` holds no copy of the set

    changes = keys.retire(key(keys_dir, "RS256", "next").kid)

    assert [e.name for e in changes.events] == ["key.retired", "key.published"]
    assert sorted(s for k, s in states(keys_dir).items() if k.startswith("rs256")) == [
        "active",
        "next",
        "retired",
        "retired",
    ]


def rotate_in_child(keys_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(timeout=60)
    KeyRotation(Path(keys_dir), clock=SystemClock(), timings=TIMINGS).rotate(["RS256"], force=True)


def test_rotations_by_processes_at_once_all_land_one_after_another(keys_dir):
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=rotate_in_child, args=(str(keys_dir), barrier)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [p.exitcode for p in processes] == [0] * workers
    rs256 = [r for r in read_manifest(keys_dir) if r.alg == "RS256"]
    # Each change read the one before it: no rotation was lost, no key promoted twice.
    assert sorted(r.state for r in rs256) == ["active", "next"] + ["retired"] * workers
    files = sorted(p.name for p in keys_dir.glob("*.pem"))
    assert files == sorted(r.file for r in read_manifest(keys_dir))
    assert not list(keys_dir.glob(".*.tmp"))
    assert json.loads((keys_dir / MANIFEST).read_text())["version"] == 1
