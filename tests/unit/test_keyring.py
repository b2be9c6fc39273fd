"""The signing key set in a folder: created once, signed with by kid, reloaded after rotation."""

from __future__ import annotations

import json
import multiprocessing
import re
import stat
import types
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import RSAKey

from idp.clock import FrozenClock, SystemClock
from idp.keys import files as files_module
from idp.keys import ring as ring_module
from idp.keys.ring import KeyRing, load_key_set
from idp.keys.rotation import KeyRotation, KeyTimings
from idp.keys.store import MANIFEST, KeyRecord, KeySetError, ensure_key_set, write_manifest

LOCK_FILE = ".keys.lock"
FIRST_SET = [("ES256", "active"), ("ES256", "next"), ("RS256", "active"), ("RS256", "next")]


def manifest(keys_dir: Path) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = json.loads((keys_dir / MANIFEST).read_text())["keys"]
    return keys


def kid_of(token: str) -> str:
    kid: str = jws.extract_compact(token.encode()).headers()["kid"]
    return kid


def listing(keys_dir: Path) -> dict[str, bytes]:
    """Every file of the folder but the lock, with its content."""
    return {p.name: p.read_bytes() for p in keys_dir.iterdir() if p.name != LOCK_FILE}


def test_empty_folder_gets_an_active_and_a_next_key_per_algorithm(tmp_path, clock):
    keys_dir = tmp_path / "keys"

    ring = KeyRing(keys_dir, clock=clock)

    entries = manifest(keys_dir)
    assert sorted((e["alg"], e["state"]) for e in entries) == FIRST_SET
    # The next keys are published from the start, so the first rotation has nothing to wait for.
    assert {e["created_at"] for e in entries} == {clock.now().isoformat()}
    assert {e["activated_at"] for e in entries if e["state"] == "active"} == {clock.now().isoformat()}
    assert sorted(p.name for p in keys_dir.glob("*.pem")) == sorted(e["file"] for e in entries)
    assert [r.kid for r in ring.records()] == [e["kid"] for e in entries]
    assert ring.supported_algorithms() == ["ES256", "RS256"]


def test_key_files_and_manifest_are_readable_by_the_owner_only(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)

    files = [*tmp_path.glob("*.pem"), tmp_path / MANIFEST]
    assert len(files) == 5
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_second_start_on_the_same_folder_keeps_the_key_set(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    before = listing(tmp_path)

    KeyRing(tmp_path, clock=clock)

    assert listing(tmp_path) == before


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_token_names_the_active_key_by_kid_and_verifies(tmp_path, clock, alg):
    ring = KeyRing(tmp_path, clock=clock)
    active = next(r for r in ring.records() if r.alg == alg and r.state == "active")

    token = ring.sign({"sub": "account-1", "aud": "portal"}, alg=alg)

    assert jws.extract_compact(token.encode()).headers() == {"alg": alg, "kid": active.kid, "typ": "JWT"}
    assert ring.verify(token).claims == {"sub": "account-1", "aud": "portal"}


def test_public_jwks_holds_no_private_parts(tmp_path, clock):
    ring = KeyRing(tmp_path, clock=clock)

    jwks = ring.public_jwks()

    assert {key["kid"] for key in jwks["keys"]} == {r.kid for r in ring.records()}
    for key in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_token_signed_by_a_foreign_key_set_fails(tmp_path, clock):
    ours = KeyRing(tmp_path / "ours", clock=clock)
    theirs = KeyRing(tmp_path / "theirs", clock=clock)

    with pytest.raises(JoseError):
        ours.verify(theirs.sign({"sub": "intruder"}))


def test_token_claiming_our_kid_but_signed_by_another_key_fails(tmp_path, clock):
    ring = KeyRing(tmp_path, clock=clock)
    active = next(r for r in ring.records() if r.alg == "RS256")
    forged = jwt.encode({"alg": "RS256", "kid": active.kid}, {"sub": "intruder"}, RSAKey.generate_key(2048))

    with pytest.raises(BadSignatureError):
        ring.verify(forged)


@pytest.mark.parametrize("allowed", [["none"], ["HS256"], [], ["ES256"]])
def test_verify_refuses_a_token_whose_algorithm_is_not_allowed(tmp_path, clock, allowed):
    ring = KeyRing(tmp_path, clock=clock)
    token = ring.sign({"sub": "account-1"}, alg="RS256")

    with pytest.raises(JoseError):
        ring.verify(token, algorithms=allowed)


def test_passphrase_encrypts_the_keys_at_rest(tmp_path, clock):
    KeyRing(tmp_path, clock=clock, passphrase="correct passphrase")

    for pem in tmp_path.glob("*.pem"):
        assert b"ENCRYPTED" in pem.read_bytes()
    assert len(load_key_set(tmp_path, "correct passphrase").private) == 4


@pytest.mark.parametrize("passphrase", ["wrong passphrase", None])
def test_encrypted_keys_refuse_a_wrong_or_missing_passphrase(tmp_path, clock, passphrase):
    KeyRing(tmp_path, clock=clock, passphrase="correct passphrase")

    with pytest.raises(KeySetError, match="IDP_KEYS_PASSPHRASE"):
        KeyRing(tmp_path, clock=clock, passphrase=passphrase)


def test_plain_keys_refuse_a_passphrase(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)

    with pytest.raises(KeySetError):
        load_key_set(tmp_path, "unexpected passphrase")


def test_key_files_without_a_manifest_stop_the_start_and_create_nothing(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    (tmp_path / MANIFEST).unlink()
    before = listing(tmp_path)

    with pytest.raises(KeySetError, match=re.escape(MANIFEST)):
        KeyRing(tmp_path, clock=clock)

    assert listing(tmp_path) == before


def test_a_stray_pem_file_alone_is_enough_to_refuse(tmp_path, clock):
    (tmp_path / "old-key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")

    with pytest.raises(KeySetError, match=re.escape("old-key.pem")):
        ensure_key_set(tmp_path, clock=clock, passphrase=None)

    assert listing(tmp_path) == {"old-key.pem": b"-----BEGIN PRIVATE KEY-----\n"}


@pytest.mark.parametrize(
    "body",
    [
        "",
        "{not json",
        "[]",
        '{"version": 1}',
        '{"keys": null}',
        '{"keys": "rs256"}',
        '{"keys": [{"kid": "k1"}]}',
        '{"keys": [{"kid": "k1", "alg": "HS256", "state": "active", "created_at": "", "file": "k1.pem"}]}',
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "active", "created_at": "", "file": "../k1.pem"}]}',
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "active", "created_at": "", "file": "gone.pem"}]}',
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "active", "created_at": "today", "file": "a"}]}',
        # A time without a zone could be read as local time: refused rather than guessed.
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "active", "created_at": "2026-09-01T08:00:00",'
        ' "file": "a"}]}',
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "expired", "created_at": "2026-09-01T08:00:00Z",'
        ' "file": "a"}]}',
        '{"keys": [{"kid": "k1", "alg": "RS256", "state": "next", "created_at": "2026-09-01T08:00:00Z",'
        ' "file": "a"}]}',
    ],
)
def test_corrupt_manifest_raises_key_set_error(tmp_path, clock, body):
    KeyRing(tmp_path, clock=clock)
    (tmp_path / MANIFEST).write_text(body)
    before = listing(tmp_path)

    with pytest.raises(KeySetError):
        KeyRing(tmp_path, clock=clock)

    assert listing(tmp_path) == before


def test_manifest_that_is_not_utf8_raises_key_set_error(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    (tmp_path / MANIFEST).write_bytes(b"\xff\xfe{}")

    with pytest.raises(KeySetError):
        KeyRing(tmp_path, clock=clock)


def test_corrupt_key_file_raises_key_set_error(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    next(tmp_path.glob("rs256-*.pem")).write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )

    with pytest.raises(KeySetError, match="rs256-"):
        KeyRing(tmp_path, clock=clock)


def ensure_in_child(keys_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(timeout=60)
    ensure_key_set(Path(keys_dir), clock=SystemClock(), passphrase=None)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_processes_starting_together_on_an_empty_folder_make_one_key_set(tmp_path, start_method):
    context = multiprocessing.get_context(start_method)
    workers = 6
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=ensure_in_child, args=(str(tmp_path), barrier)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [p.exitcode for p in processes] == [0] * workers
    entries = manifest(tmp_path)
    assert sorted((e["alg"], e["state"]) for e in entries) == FIRST_SET
    assert sorted(p.name for p in tmp_path.glob("*.pem")) == sorted(e["file"] for e in entries)
    assert not list(tmp_path.glob(".*.tmp"))


def rotate_rs256_in_child(keys_dir: str) -> None:
    """What ``idp keys rotate --alg RS256`` does in another process."""
    timings = KeyTimings(timedelta(0), timedelta(0), timedelta(minutes=10))
    KeyRotation(Path(keys_dir), clock=SystemClock(), timings=timings).rotate(["RS256"])


def test_manifest_rewritten_by_another_process_is_picked_up_after_check_seconds(tmp_path, monkeypatch):
    now = [1_000.0]  # the ring's monotonic clock, moved by hand
    monkeypatch.setattr(ring_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    ring = KeyRing(tmp_path, clock=FrozenClock(), check_seconds=2)
    old_kid = next(r.kid for r in ring.records() if r.alg == "RS256")
    old_token = ring.sign({"sub": "account-1"})  # looks at the manifest: checked at t=1000
    rotation = multiprocessing.get_context("spawn").Process(
        target=rotate_rs256_in_child, args=(str(tmp_path),)
    )
    rotation.start()
    rotation.join(timeout=120)
    assert rotation.exitcode == 0
    new_kid = next(e["kid"] for e in manifest(tmp_path) if e["alg"] == "RS256" and e["state"] == "active")

    now[0] += 1.9
    assert kid_of(ring.sign({"sub": "x"})) == old_kid

    now[0] += 0.1
    assert kid_of(ring.sign({"sub": "x"})) == new_kid
    assert ring.verify(old_token).claims == {"sub": "account-1"}  # retired keys stay published
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {e["kid"] for e in manifest(tmp_path)}


def test_two_next_keys_of_one_algorithm_raise_key_set_error(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    document = json.loads((tmp_path / MANIFEST).read_text())
    upcoming = next(e for e in document["keys"] if e["alg"] == "RS256" and e["state"] == "next")
    document["keys"].append({**upcoming, "kid": "rs256-second-next"})
    (tmp_path / MANIFEST).write_text(json.dumps(document))

    with pytest.raises(KeySetError, match="more than one next RS256 key"):
        KeyRing(tmp_path, clock=clock)


def test_manifest_from_before_key_times_were_kept_still_loads(tmp_path, clock):
    KeyRing(tmp_path, clock=clock)
    document = json.loads((tmp_path / MANIFEST).read_text())
    # The first manifest format: kid, alg, state, created_at and file only.
    legacy = [
        {name: entry[name] for name in ("kid", "alg", "state", "created_at", "file")}
        for entry in document["keys"]
        if entry["state"] == "active"
    ]
    (tmp_path / MANIFEST).write_text(json.dumps({"version": 1, "keys": legacy}))

    ring = KeyRing(tmp_path, clock=clock)

    assert [(r.state, r.activated_at) for r in ring.records()] == [("active", None)] * 2
    assert ring.verify(ring.sign({"sub": "account-1"})).claims == {"sub": "account-1"}


def test_jwks_bytes_are_the_public_jwks_and_change_with_the_key_set(tmp_path, clock):
    ring = KeyRing(tmp_path, clock=clock, check_seconds=0)
    body, etag = ring.public_jwks_json()
    assert json.loads(body) == ring.public_jwks()
    assert ring.public_jwks_json() == (body, etag)  # the same bytes, not rebuilt per call

    rotate_rs256_in_child(str(tmp_path))

    new_body, new_etag = ring.public_jwks_json()
    assert new_etag != etag
    assert {k["kid"] for k in json.loads(new_body)["keys"]} == {e["kid"] for e in manifest(tmp_path)}


def test_changed_manifest_that_cannot_be_loaded_leaves_the_previous_set_in_service(
    tmp_path, clock, monkeypatch, caplog
):
    now = [1_000.0]
    monkeypatch.setattr(ring_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    ring = KeyRing(tmp_path, clock=clock, check_seconds=1)
    kid = kid_of(ring.sign({"sub": "x"}))
    good = (tmp_path / MANIFEST).read_text()
    (tmp_path / MANIFEST).write_text("{half a manifest")

    now[0] += 1
    token = ring.sign({"sub": "x"})

    assert kid_of(token) == kid
    assert "still serving the previous one" in caplog.text
    # Once the manifest is whole again (here: restored, then rotated), the change is picked up.
    (tmp_path / MANIFEST).write_text(good)
    rotate_rs256_in_child(str(tmp_path))
    now[0] += 1
    assert kid_of(ring.sign({"sub": "x"})) != kid


def test_key_file_pruned_while_the_manifest_is_read_is_read_again(tmp_path, clock, monkeypatch):
    KeyRing(tmp_path, clock=clock)
    rotate_rs256_in_child(str(tmp_path))  # leaves a retired RS256 key
    retired = next(r for r in load_key_set(tmp_path, None).records if r.state == "retired")
    original = files_module.read_manifest
    calls = []

    def read_then_prune(keys_dir: Path) -> tuple[KeyRecord, ...]:
        records = original(keys_dir)
        if not calls:  # another process prunes right after our first read
            write_manifest(keys_dir, [r for r in records if r.kid != retired.kid])
            (keys_dir / retired.file).unlink()
        calls.append(keys_dir)
        return records

    monkeypatch.setattr(files_module, "read_manifest", read_then_prune)

    loaded = load_key_set(tmp_path, None)

    assert len(calls) == 2
    assert retired.kid not in {r.kid for r in loaded.records}
