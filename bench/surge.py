"""A back-to-school surge: parents signing in through their portals, against the argon2-only ceiling.

Starts the stack a district runs, on this machine: a PostgreSQL database of its own (created and
dropped), PgBouncer in transaction mode in front of it, a Redis of its own on a free port, two
gunicorn instances of the provider (as many sync workers each as the machine has cores), and
Caddy terminating TLS (its internal CA) in front of both, round robin. It seeds ``--parents``
parents with one or two students each, and students no one has registered with yet.

Then, in one run on the same cores:

1. **the argon2-only ceiling**: ``cores`` processes doing nothing but argon2 verifies at the
   provider's cost for ``--ceiling-seconds``: the sign-ins per second the machine could make if
   the rest cost nothing; and one verify's wall time alone;
2. **a ramp to saturation**: Locust users (``bench.surge_load``), each a parent's browser and
   portal doing whole flows back to back (authorize, sign-in page, sign-in, continued
   authorization, token, userinfo; ``--wrong-passwords`` of the sign-ins mistyped once first;
   ``--registrations`` of the turns a registration instead), at each user count of ``--steps``:
   flows per second and the whole flow's p50 / p95 / p99, and the CPU each part of the stack
   spent per flow;
3. **a paced run at 80 %** of the saturating rate (Locust's ``constant_throughput``): the whole
   flow's p95, against four times a verify.

It prints the ratios: flows per second ÷ the ceiling (a flow has one successful argon2 verify, a
mistyped password one more), and the argon2 verifies the provider made per second ÷ the ceiling.

Run from the repository root (PostgreSQL on 127.0.0.1:5432; ``pgbouncer``, ``redis-server``
and ``caddy`` installed, as Debian ships them)::

    .venv/bin/python -m bench.surge [--parents 2000] [--steps 2,4,8,16] [--step-seconds 20]
        [--paced-seconds 30] [--ceiling-seconds 10] [--workers N]

The defaults finish in about four minutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # Locust's dependency
import psycopg
from argon2 import PasswordHasher, Type

from bench.harness import (
    POSTGRES_ADMIN_URL,
    REPO_ROOT,
    database,
    describe_machine,
    free_port,
    gunicorn,
    load_average,
    stop,
)
from idp.accounts.skeleton import confusable_skeleton
from idp.accounts.usernames import username_key
from idp.config import Settings
from tests.infra import pgbouncer
from tests.redis_server import RedisServer

CADDY = shutil.which("caddy") or "/usr/bin/caddy"
PASSWORD = "correct horse battery staple 42"
ACCESS_PASSWORD = "orchid-comet-42"
REDIRECT_URI = "https://portal.example.test/callback"
SCOPE = "openid profile email students"
SECRET_KEY = "surge-bench-secret-key-0123456789abcdef0123456789"
START_TIMEOUT_S = 60.0
# Locust users that pace the 80 % run: enough that one slow flow does not hold the rate back.
PACED_USERS_PER_SATURATING_USER = 2


@dataclass(frozen=True)
class Argon2Cost:
    time_cost: int
    memory_kib: int
    parallelism: int

    @classmethod
    def provider_default(cls) -> Argon2Cost:
        settings = Settings()
        return cls(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism, type=Type.ID
        )


# --- the argon2-only ceiling -----------------------------------------------------------------------
def _verifies_for(cost: Argon2Cost, stored: str, seconds: float) -> int:
    hasher = cost.hasher()
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored, PASSWORD)
        done += 1
    return done


def argon2_ceiling(cost: Argon2Cost, stored: str, processes: int, seconds: float) -> float:
    """Verifies per second of ``processes`` processes doing nothing else."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        started = time.perf_counter()
        counts = pool.starmap(_verifies_for, [(cost, stored, seconds)] * processes)
        elapsed = time.perf_counter() - started
    return sum(counts) / max(elapsed, seconds)


def one_verify_ms(cost: Argon2Cost, stored: str, rounds: int = 30) -> float:
    """Median wall time of one verify, alone."""
    hasher = cost.hasher()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


# --- the district's data ---------------------------------------------------------------------------
@dataclass
class District:
    usernames: list[str]
    registrations: list[tuple[str, str]]  # Access ID, first name


def seed(url: str, parents: int, free_students: int, password_hash: str, access_hash: str) -> District:
    """Parents with one or two students each, and students no one registered with, by COPY."""
    rng = random.Random(21)  # noqa: S311 (made-up names, not secrets)
    now = datetime.now(UTC)
    school_id = secrets.token_hex(16)
    usernames: list[str] = []
    registrations: list[tuple[str, str]] = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO school (id, code, name, created_at) VALUES (%s, 'SURGE', 'Surge Elementary', %s)",
            (school_id, now),
        )
        students: list[str] = []
        with cur.copy(
            "COPY student (id, sis_id, first_name, last_name, school_id, grade, access_id,"
            " access_password_hash, active, created_at) FROM STDIN"
        ) as copy:
            for n in range(parents * 3 // 2 + free_students):
                student_id = secrets.token_hex(16)
                first = f"Kid{n}"
                access_id = f"SRG{n:07d}"
                copy.write_row(
                    (
                        student_id,
                        f"S{n:07d}",
                        first,
                        "Surge",
                        school_id,
                        "3",
                        access_id,
                        access_hash,
                        True,
                        now,
                    )
                )
                if n < parents * 3 // 2:
                    students.append(student_id)
                else:
                    registrations.append((access_id, first))
        links: list[tuple[str, str]] = []
        with cur.copy(
            "COPY account (id, type, username, username_key, username_skeleton, email, first_name,"
            " last_name, password_hash, password_scheme, password_changed_at, must_change_password,"
            " status, email_verified_at, primary_student_id, login_count, created_at, is_test_account)"
            " FROM STDIN"
        ) as copy:
            for n in range(parents):
                account_id = secrets.token_hex(16)
                username = f"surge.parent.{n}"
                usernames.append(username)
                children = rng.sample(students, rng.choice((1, 1, 2)))
                key = username_key(username)
                copy.write_row(
                    (
                        account_id,
                        "parent",
                        username,
                        key,
                        confusable_skeleton(key),
                        f"{username}@example.org",
                        "Parent",
                        f"Surge{n}",
                        password_hash,
                        "argon2id",
                        now,
                        False,
                        "confirmed",
                        now,
                        children[0],
                        0,
                        now,
                        False,
                    )
                )
                links.extend((account_id, child) for child in children)
        with cur.copy(
            "COPY guardian_link (id, account_id, student_id, school_id, relationship, status, created_at)"
            " FROM STDIN"
        ) as copy:
            for account_id, student_id in links:
                copy.write_row(
                    (secrets.token_hex(16), account_id, student_id, school_id, "Mother", "active", now)
                )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return District(usernames, registrations)


# --- the stack -------------------------------------------------------------------------------------
def provider_env(
    *, issuer: str, database_url: str, redis_url: str, workdir: Path, cost: Argon2Cost
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ENV="development",
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=database_url,
        IDP_REDIS_URL=redis_url,
        IDP_REDIS_KEY_PREFIX="idp-surge:",
        IDP_SECRET_KEY=SECRET_KEY,
        IDP_KEYS_DIR=str(workdir / "keys"),  # one folder for both instances, as a shared volume
        IDP_SMTP_URL=f"file://{workdir / 'outbox'}",
        IDP_TRUSTED_PROXIES="1",  # Caddy
        IDP_ARGON2_TIME_COST=str(cost.time_cost),
        IDP_ARGON2_MEMORY_KIB=str(cost.memory_kib),
        IDP_ARGON2_PARALLELISM=str(cost.parallelism),
        # Every parent comes from one address here; a school's families share one in life too.
        IDP_RATE_LIMIT_SIGNIN="100000000/minute",
        IDP_RATE_LIMIT_REGISTER="100000000/minute",
        IDP_RATE_LIMIT_TOKEN="100000000/minute",
        IDP_LOG_FORMAT="json",  # as in production: one line per request
    )
    return env


def prepare(
    env: dict[str, str], parents: int, free_students: int, direct_url: str, cost: Argon2Cost
) -> tuple[District, str, str]:
    """Migrate, seed, register the portal; return the district and the portal's credentials."""
    from flask_migrate import upgrade

    from idp import create_app
    from idp.extensions import db
    from idp.oauth.clients import ClientService, ClientSpec

    settings = Settings.from_env(env)
    app = create_app(settings)
    with app.app_context():
        upgrade()
        registered = ClientService(db.session).create(
            ClientSpec(name="Surge Portal", redirect_uris=[REDIRECT_URI], first_party=True, scope=SCOPE)
        )
        db.session.commit()
        client_id, secret = registered.client.client_id, registered.client_secret
        db.session.remove()
        db.engine.dispose()
    assert secret is not None
    hasher = cost.hasher()
    district = seed(
        direct_url.replace("postgresql+psycopg://", "postgresql://", 1),
        parents,
        free_students,
        hasher.hash(PASSWORD),
        hasher.hash(ACCESS_PASSWORD),
    )
    return district, client_id, secret


def caddyfile(*, admin_port: int, http_port: int, https_port: int, upstreams: list[int]) -> str:
    backends = " ".join(f"127.0.0.1:{port}" for port in upstreams)
    return f"""{{
	admin 127.0.0.1:{admin_port}
	skip_install_trust
	local_certs
	http_port {http_port}
	https_port {https_port}
}}
localhost:{https_port} {{
	bind 127.0.0.1
	tls internal
	reverse_proxy {backends} {{
		lb_policy round_robin
	}}
}}
"""


@contextmanager
def caddy(
    workdir: Path, https_port: int, upstreams: list[int], ready_path: str = "/healthz"
) -> Iterator[subprocess.Popen[bytes]]:
    folder = workdir / "caddy"
    folder.mkdir()
    config = folder / "Caddyfile"
    config.write_text(
        caddyfile(admin_port=free_port(), http_port=free_port(), https_port=https_port, upstreams=upstreams)
    )
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
    log_path = folder / "caddy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_https(f"https://localhost:{https_port}{ready_path}", process, log_path)
        yield process
    finally:
        stop(process)


def wait_for_https(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import ssl
    import urllib.request

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"caddy exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=insecure) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"caddy did not answer {url} within {START_TIMEOUT_S:.0f} s:\n{log_path.read_text()}")


@dataclass
class Stack:
    issuer: str
    plan: dict[str, Any]
    database: str
    # Name → the processes whose CPU is counted under it (gunicorn workers are found anew each time).
    roots: dict[str, list[int]] = field(default_factory=dict)


def pids_named(fragment: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(fragment in part for part in p.info["cmdline"] or ())
    ]


@contextmanager
def stack(args: argparse.Namespace, workdir: Path, cost: Argon2Cost) -> Iterator[Stack]:
    with ExitStack() as stack:
        direct_url = stack.enter_context(database("postgresql", workdir, name="idp_surge"))
        pooled_url = (
            stack.enter_context(pgbouncer(direct_url, workdir, pool_size=args.pool_size))
            if args.pooler
            else direct_url
        )
        redis = RedisServer(workdir)
        redis.start()
        stack.callback(redis.stop)
        https_port = free_port()
        issuer = f"https://localhost:{https_port}"
        env = provider_env(
            issuer=issuer, database_url=pooled_url, redis_url=redis.url, workdir=workdir, cost=cost
        )
        progress(f"seeding {args.parents:,} parents")
        district, client_id, secret = prepare(
            {**env, "IDP_DATABASE_URL": direct_url}, args.parents, args.free_students, direct_url, cost
        )
        ports = [free_port(), free_port()]
        roots: dict[str, list[int]] = {"gunicorn": []}
        for n, port in enumerate(ports):
            stack.enter_context(
                gunicorn(
                    "idp:create_app()",
                    env,
                    port,
                    args.workers,
                    workdir / f"gunicorn-{n}.log",
                    config="python:idp.gunicorn_conf",  # as the image runs it: JSON logs, metrics
                )
            )
            roots["gunicorn"].extend(pids_named(f"127.0.0.1:{port}"))
        proxy = stack.enter_context(caddy(workdir, https_port, ports))
        roots["caddy"] = [proxy.pid]
        roots["pgbouncer"] = pids_named(str(workdir / "pgbouncer-"))
        assert redis.process is not None
        roots["redis"] = [redis.process.pid]
        plan = {
            "issuer": issuer,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "password": PASSWORD,
            "usernames": district.usernames,
            "wrong_password_share": args.wrong_passwords,
            "register_share": args.registrations,
            "access_password": ACCESS_PASSWORD,
            "registrations": district.registrations,
        }
        yield Stack(issuer, plan, direct_url.rsplit("/", 1)[1], roots)


# --- CPU by part of the stack ----------------------------------------------------------------------
def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each part: its processes and their children; PostgreSQL's backends
    serving the bench's database."""
    spent: dict[str, float] = {}
    for name, pids in stack.roots.items():
        # A gunicorn worker has its master's command line: found as a root and as a child, once.
        processes: dict[int, Any] = {}
        for pid in pids:
            try:
                root = psutil.Process(pid)
                processes.update((p.pid, p) for p in [root, *root.children(recursive=True)])
            except psutil.NoSuchProcess:
                continue
        total = 0.0
        for process in processes.values():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        spent[name] = total
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        backends = [
            row[0]
            for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (stack.database,))
        ]
    total = 0.0
    for pid in backends:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    spent["postgresql"] = total
    return spent


# --- a phase of load -------------------------------------------------------------------------------
@dataclass
class Phase:
    users: int
    paced: float | None
    flows_per_second: float
    registrations_per_second: float
    flow_ms: dict[str, float]
    registration_p95_ms: float | None
    wrong_passwords: int
    flows: int
    failures: dict[str, int]
    cpu_ms_per_flow: dict[str, float]
    load: str
    # Each step's own p95 (ms), by name.
    request_p95_ms: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_phase(
    stack: Stack, workdir: Path, users: int, seconds: float, plan: dict[str, Any], paced: float | None = None
) -> Phase:
    plan_path = workdir / f"plan-{plan.get('peer', 'provider')}-{users}-{int(paced or 0)}.json"
    plan_path.write_text(json.dumps(plan))
    command = [
        sys.executable,
        "-m",
        "bench.surge_load",
        "--plan",
        str(plan_path),
        "--users",
        str(users),
        "--seconds",
        str(seconds),
    ]
    if paced:
        command += ["--flows-per-second", f"{paced:.3f}"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=(workdir / "locust.log").open("ab"), text=True
    )
    assert process.stdout is not None
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    result: dict[str, Any] = {}
    for line in process.stdout:
        line = line.strip()
        if line == "measuring":
            before = cpu_seconds(stack)
        elif line == "done":
            after = cpu_seconds(stack)
        elif line.startswith("{"):
            result = json.loads(line)
    if process.wait() != 0 or not result:
        raise RuntimeError(f"the load process failed: see {workdir / 'locust.log'}")
    window = result["window_seconds"]
    flows = [s * 1000 for s in result["flows"]]
    registrations = [s * 1000 for s in result["registrations"]]
    turns = max(1, len(flows) + len(registrations))
    cpu = {name: (after[name] - before.get(name, 0.0)) * 1000 / turns for name in after}
    cpu["load generator"] = result["client_cpu_seconds"] * 1000 / turns
    return Phase(
        users=users,
        paced=paced,
        flows_per_second=len(flows) / window,
        registrations_per_second=len(registrations) / window,
        flow_ms={p: percentile(flows, float(p[1:])) for p in ("p50", "p95", "p99")} if flows else {},
        registration_p95_ms=percentile(registrations, 95) if registrations else None,
        wrong_passwords=result["wrong_passwords"],
        flows=len(flows),
        failures=result["failures"],
        cpu_ms_per_flow=cpu,
        load=load_average(),
        request_p95_ms={name: percentile(times, 95) for name, times in result["requests"].items() if times},
    )


def describe(phase: Phase) -> str:
    ms = phase.flow_ms
    label = f"paced {phase.paced:.1f}/s" if phase.paced else "closed loop"
    failures = f"  failures {phase.failures}" if phase.failures else ""
    return (
        f"{phase.users:3d} users ({label}): {phase.flows_per_second:6.2f} flows/s "
        f"p50 {ms.get('p50', 0):6.0f} ms  p95 {ms.get('p95', 0):6.0f} ms  p99 {ms.get('p99', 0):6.0f} ms  "
        f"registrations {phase.registrations_per_second:.2f}/s  load {phase.load}{failures}"
    )


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--parents", type=int, default=2000)
    parser.add_argument("--free-students", type=int, default=1000, help="students to register with")
    parser.add_argument("--steps", default="2,4,8,16", help="Locust user counts of the ramp")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=cores, help="gunicorn workers per instance")
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server connections")
    parser.add_argument(
        "--no-pooler", dest="pooler", action="store_false", help="the instances straight to PostgreSQL"
    )
    parser.add_argument("--wrong-passwords", type=float, default=0.10)
    parser.add_argument("--registrations", type=float, default=0.02)
    parser.add_argument(
        "--canaille",
        action="store_true",
        help="also Canaille, each step right after the provider's (installs it under /tmp)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) and say where")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    cost = Argon2Cost.provider_default()
    workdir = Path(tempfile.mkdtemp(prefix="idp-surge-"))
    try:
        with ExitStack() as stacks:
            running = stacks.enter_context(stack(args, workdir, cost))
            peer = stacks.enter_context(canaille(args, workdir, cost)) if args.canaille else None
            print(f"machine: {describe_machine()}; load {load_average()}")
            print(
                f"stack: Caddy (TLS) → 2 gunicorn instances × {args.workers} workers → "
                f"{'PgBouncer (transaction) → ' if args.pooler else ''}PostgreSQL; Redis; "
                f"argon2id t={cost.time_cost} m={cost.memory_kib} KiB "
                f"p={cost.parallelism}; {args.parents:,} parents"
            )
            stored = cost.hasher().hash(PASSWORD)
            verify_ms = one_verify_ms(cost, stored)
            ceiling = argon2_ceiling(cost, stored, cores, args.ceiling_seconds)
            print(
                f"argon2 alone: one verify {verify_ms:.1f} ms; "
                f"ceiling {ceiling:.1f} verifies/s on {cores} cores"
            )
            registrations = running.plan["registrations"]
            share = max(1, len(registrations) // (len(steps) + 1))
            phases: list[Phase] = []
            peer_phases: list[Phase] = []
            for n, users in enumerate(steps):
                plan = {**running.plan, "registrations": registrations[n * share : (n + 1) * share]}
                phase = run_phase(running, workdir, users, args.step_seconds, plan)
                phases.append(phase)
                print(describe(phase), flush=True)
                if peer is not None:
                    # Alternated step by step: both see the machine of the same minutes.
                    peer_phases.append(run_phase(peer, workdir, users, args.step_seconds, peer.plan))
                    print("  Canaille", describe(peer_phases[-1]), flush=True)
            saturated = max(phases, key=lambda p: p.flows_per_second)
            plan = {**running.plan, "registrations": registrations[len(steps) * share :]}
            target = 0.8 * saturated.flows_per_second
            paced = run_phase(
                running,
                workdir,
                max(4, PACED_USERS_PER_SATURATING_USER * saturated.users),
                args.paced_seconds,
                plan,
                paced=target,
            )
            print(describe(paced), flush=True)
            report(saturated, paced, ceiling, verify_ms)
            if peer_phases and max(p.flows_per_second for p in peer_phases) > 0:
                report_peer(saturated, max(peer_phases, key=lambda p: p.flows_per_second), ceiling)
            if args.json:
                args.json.write_text(
                    json.dumps(
                        {
                            "ceiling_verifies_per_second": ceiling,
                            "verify_ms": verify_ms,
                            "phases": [asdict(p) for p in phases],
                            "paced": asdict(paced),
                            "canaille": [asdict(p) for p in peer_phases],
                        },
                        indent=2,
                    )
                )
    finally:
        if args.keep:
            progress(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


@contextmanager
def canaille(args: argparse.Namespace, workdir: Path, cost: Argon2Cost) -> Iterator[Stack]:
    from bench.surge_canaille import canaille_stack

    parents = min(args.parents, 500)  # saved through its ORM one by one; the flow's cost is the same
    progress(f"starting Canaille with {parents} parents")
    with canaille_stack(
        workdir,
        parents=parents,
        workers=args.workers,
        cost=cost,
        password=PASSWORD,
        redirect_uri=REDIRECT_URI,
        wrong_share=args.wrong_passwords,
    ) as (plan, roots, database_name):
        yield Stack(plan["issuer"], plan, database_name, roots)


def report_peer(saturated: Phase, peer: Phase, ceiling: float) -> None:
    ours = sum(v for k, v in saturated.cpu_ms_per_flow.items() if k != "load generator")
    theirs = sum(v for k, v in peer.cpu_ms_per_flow.items() if k != "load generator")
    print(
        f"Canaille at saturation: {peer.users} users, {peer.flows_per_second:.2f} flows/s "
        f"({peer.flows_per_second / ceiling:.2f} of the ceiling), server CPU {theirs:.1f} ms per flow"
    )
    ratio = saturated.flows_per_second / peer.flows_per_second
    print(
        f"provider ÷ Canaille, flows/s at saturation: {ratio:.2f}"
        f"   (server CPU per flow {ours:.1f} against {theirs:.1f} ms)"
    )


def report(saturated: Phase, paced: Phase, ceiling: float, verify_ms: float) -> None:
    wrong_share = saturated.wrong_passwords / max(1, saturated.flows)
    verifies = saturated.flows_per_second * (1 + wrong_share)
    print()
    print(f"saturation: {saturated.users} users, {saturated.flows_per_second:.2f} flows/s")
    print(
        "CPU per flow (ms), by part:", ", ".join(f"{k} {v:.1f}" for k, v in saturated.cpu_ms_per_flow.items())
    )
    server = sum(v for k, v in saturated.cpu_ms_per_flow.items() if k != "load generator")
    print(f"  server side in all: {server:.1f} ms per flow")
    print(f"flows/s ÷ argon2 ceiling:            {saturated.flows_per_second / ceiling:.2f}")
    print(
        f"argon2 verifies/s ÷ argon2 ceiling:  {verifies / ceiling:.2f}   "
        f"(wrong passwords: {wrong_share:.1%})"
    )
    p95 = paced.flow_ms.get("p95", float("nan"))
    print(
        f"p95 at {paced.flows_per_second:.2f} flows/s "
        f"({paced.flows_per_second / saturated.flows_per_second:.0%} "
        f"of saturation): {p95:.0f} ms = {p95 / verify_ms:.1f} × one verify ({verify_ms:.1f} ms)"
    )
    signin = paced.request_p95_ms.get("POST /signin", float("nan"))
    print(f"  the sign-in POST's own p95 there: {signin:.0f} ms = {signin / verify_ms:.1f} × one verify")
    print(
        "  each step's p95 there (ms):",
        ", ".join(f"{name} {ms:.0f}" for name, ms in sorted(paced.request_p95_ms.items())),
    )


if __name__ == "__main__":
    sys.exit(main())
