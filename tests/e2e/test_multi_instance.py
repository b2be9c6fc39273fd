"""Two provider instances as a district scales out, on real parts the test starts itself.

Two gunicorn instances of the provider and one ``idp worker`` share a PostgreSQL database through
PgBouncer (transaction mode), a Redis master and replica watched by a Sentinel (never the shared
Redis), and the signing keys in the database key store. Caddy is the TLS proxy in front: its
load-balanced site is the issuer, and one more site per instance (same host, a port of its own)
reaches that instance alone, so a test chooses which instance answers each request while the
browser's cookies, scoped by host, go to both. A back-channel receiver in this process stands in
for the portal's logout endpoint.

The tests share the stack and run in file order: the destructive ones (stopping an instance,
ending every database connection, a Sentinel failover) come last, and each leaves the stack
whole. Waits poll until their condition holds; their bounds are for a broken build only, generous
for a loaded machine. The one bound that is a claim is the key pickup: ten times the check
interval (the design's "within 5 s" is 2.5 intervals), so that a loaded machine does not fail it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from tests.conftest import (
    PASSWORD,
    POSTGRES_ADMIN_URL,
    REDIRECT_URI,
    AuthRequest,
    csrf_token,
    drop_postgres_database,
    postgres_url,
    recreate_postgres_database,
    redirect_params,
)
from tests.e2e.conftest import (
    BIN,
    HTTP_TIMEOUT,
    ROOT,
    District,
    Provider,
    free_port,
    launch,
    provider_env,
    run_idp,
    wait_until_ready,
)
from tests.e2e.flows import describe, fetch_json, verify_id_token
from tests.e2e.stack import CADDY, WAIT, Process, Processes, answers, caddyfile, make_root_ca, wait_until
from tests.infra import SentinelRedis, pgbouncer, redis_with_sentinel
from tests.receiver import Receiver, backchannel_receiver

# One backend: the subject is the processes, the proxy and the pooler. The stack makes its own
# database. Under pytest-xdist the module's tests stay on one worker: they share one stack.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.e2e_backends("postgresql"),
    pytest.mark.xdist_group("e2e-postgresql-test_multi_instance"),
]

# One threaded worker per instance: an instance is then one process, so what one request to its
# site finds (its key ring, its Redis client) is what the next finds.
WORKERS, THREADS = 1, 4
THRESHOLD = 4
KEYS_CHECK_SECONDS = 1
JWKS_MAX_AGE = 1
# A next key may sign once it has been published for twice the JWKS cache time plus the check interval.
LEAD = timedelta(seconds=2 * JWKS_MAX_AGE + KEYS_CHECK_SECONDS)
# The pickup time is the check interval; ten times it keeps the bound robust on a loaded machine.
PICKUP_BOUND = 10.0 * KEYS_CHECK_SECONDS
# Sign-ins at once through the proxy while an instance stops, connections drop or Redis fails over.
LOAD_THREADS = 4
# How many sign-ins each load phase waits to see complete after the event it tests.
FLOWS_AFTER = 4
# How many of the sessions made while an instance stopped are checked afterwards.
SESSIONS_SAMPLED = 10
DANA = "dana.rivera"
# Lee is locked by the lockout test (the lock outlasts the module) and stays locked through the
# failover; Max counts on the new master.
LEE, MAX = "lee.alternating", "max.after-failover"
POST_LOGOUT = "https://portal.example.test/"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
INVALID = "Invalid username or password."
LOCKED = "This account is locked because of too many failed sign-in attempts."


# --- the instances -----------------------------------------------------------------------
@dataclass
class Instance:
    """One gunicorn of the provider on a fixed port (the proxy's upstream), which a test may stop
    and start again; ``url`` is the proxy's site that reaches this instance alone."""

    name: str
    port: int
    url: str
    env: dict[str, str]
    log_dir: Path
    provider: Provider | None = None
    runs: list[Path] = field(default_factory=list)  # one log per start

    def start(self) -> Provider:
        log_path = self.log_dir / f"{self.name}-{len(self.runs)}.log"
        self.runs.append(log_path)
        self.provider = launch(self.env, self.port, log_path, workers=WORKERS, threads=THREADS)
        return self.provider

    def restart(self) -> None:
        wait_until_ready([self.start()], timeout=WAIT)

    def running(self) -> Provider:
        assert self.provider is not None, f"{self.name} is stopped"
        return self.provider

    def alive(self) -> bool:
        return self.provider is not None and self.provider.process.poll() is None

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: gunicorn's graceful stop (requests in flight finish). SIGKILL: the master and
        its workers at once, as a crashed host."""
        self.signal(signum)
        self.wait_stopped()

    def signal(self, signum: signal.Signals) -> None:
        process = self.running().process
        if signum == signal.SIGKILL:
            os.killpg(process.pid, signal.SIGKILL)  # the session this harness made for it
        else:
            process.send_signal(signum)

    def wait_stopped(self) -> None:
        provider = self.running()
        try:
            provider.process.wait(timeout=WAIT)
        finally:
            provider.log_file.close()
            self.provider = None

    def requests_logged(self, *, this_run: bool = False) -> list[dict[str, Any]]:
        """The JSON request lines (idp.web.access_log) of every run, or of the current one."""
        paths = self.runs[-1:] if this_run else self.runs
        # The text after the last newline may be a line the instance is still writing.
        lines = (line for p in paths for line in p.read_text(errors="replace").split("\n")[:-1])
        entries = (json.loads(line) for line in lines if line.startswith("{"))
        return [entry for entry in entries if entry.get("event") == "request"]

    def served(self, request_id: str) -> bool:
        return any(entry.get("request_id") == request_id for entry in self.requests_logged())

    def tokens_issued_this_run(self) -> int:
        return sum(1 for e in self.requests_logged(this_run=True) if e.get("path") == "/token")

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.runs[-2:])


@dataclass
class Stack:
    issuer: str  # the proxy's load-balanced site
    database: str
    district: District
    a: Instance
    b: Instance
    worker: Process
    processes: Processes
    redis: SentinelRedis
    receiver: Receiver
    operator_env: dict[str, str]

    @property
    def instances(self) -> tuple[Instance, Instance]:
        return self.a, self.b

    def logs(self) -> str:
        own = "\n".join(f"--- {i.name}\n{i.log_tail()}" for i in self.instances)
        return f"{own}\n{self.processes.logs()}"


def register_portal(env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    """A first-party portal with a post-logout URI and a back-channel logout URI (the receiver)."""
    output = run_idp(
        env,
        *("clients", "create", "--name", "Lincoln Portal", "--first-party"),
        *("--redirect-uri", REDIRECT_URI, "--post-logout-redirect-uri", POST_LOGOUT),
        *("--backchannel-logout-uri", receiver.url, "--json"),
    )
    registered: dict[str, str] = json.loads(output)
    return registered


def create_account(env: dict[str, str], username: str) -> None:
    first, last = username.split(".", 1)
    run_idp(
        env,
        *("accounts", "create", "--username", username, "--email", f"{username}@example.org"),
        *("--password", PASSWORD, "--first-name", first.title(), "--last-name", last.title()),
    )


def stop_all(instances: tuple[Instance, ...], processes: Processes) -> None:
    """Stop the instances still running and the other processes, all at once."""
    running = [i for i in instances if i.alive()]
    for instance in running:
        instance.signal(signal.SIGTERM)
    try:
        processes.stop_all()
    finally:
        for instance in running:
            instance.wait_stopped()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("multi-instance")
    database = f"idp_multi_{os.getpid()}"
    lb_port, pin_a, pin_b = free_port(), free_port(), free_port()
    issuer = f"https://localhost:{lb_port}"
    ca = make_root_ca(workdir)
    with ExitStack() as cleanup, pytest.MonkeyPatch.context() as monkeypatch:
        # The test's HTTP clients trust the proxy's CA, and nothing else while the stack runs.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))
        recreate_postgres_database(database)
        cleanup.callback(drop_postgres_database, database)
        direct_url = postgres_url(database)
        keys_dir = workdir / "keys"  # the database key store's instances never make it
        settings = dict(
            IDP_TRUSTED_PROXIES="1",
            IDP_KEYS_STORE="database",
            IDP_KEYS_PASSPHRASE=secrets.token_urlsafe(24),
            IDP_LOCKOUT_THRESHOLD=str(THRESHOLD),
            IDP_JWKS_MAX_AGE=str(JWKS_MAX_AGE),
            IDP_KEYS_CHECK_SECONDS=str(KEYS_CHECK_SECONDS),
            IDP_LOG_FORMAT="json",
            # Hundreds of sign-ins from one address (the proxy's) within seconds.
            IDP_RATE_LIMIT_SIGNIN="100000/minute",
            IDP_RATE_LIMIT_TOKEN="100000/minute",
        )
        # The migration needs no counters: memory, never the shared Redis.
        migrate_env = provider_env(direct_url, keys_dir, issuer=issuer, IDP_REDIS_URL="memory://", **settings)
        with ThreadPoolExecutor(max_workers=1) as migrating:
            # Migrations run directly on the database, as a deployment's migrate step does,
            # while the pooler and Redis start.
            migrated = migrating.submit(run_idp, migrate_env, "db", "upgrade")
            pooled_url = cleanup.enter_context(pgbouncer(direct_url, workdir))
            redis = cleanup.enter_context(redis_with_sentinel(workdir))
            receiver = cleanup.enter_context(backchannel_receiver())
            migrated.result()
        processes = Processes(workdir, ROOT)
        env = provider_env(pooled_url, keys_dir, issuer=issuer, IDP_REDIS_URL=redis.url, **settings)
        a, b = (
            Instance(name, free_port(), f"https://localhost:{pin}", env, workdir)
            for name, pin in (("instance-a", pin_a), ("instance-b", pin_b))
        )
        # The operator's commands, the instances and the worker start together: all of them need
        # only the schema (and the first of them to need keys makes the one key set).
        with ThreadPoolExecutor(max_workers=4) as operator:
            portal = operator.submit(register_portal, env, receiver)
            accounts = [operator.submit(create_account, env, u) for u in (DANA, LEE, MAX)]
            cleanup.callback(stop_all, (a, b), processes)
            for instance in (a, b):
                instance.start()
            worker = processes.start("worker", [str(BIN / "idp"), "worker"], env)
            registered = portal.result()
            for created in accounts:
                created.result()
        wait_until_ready([a.running(), b.running()], timeout=WAIT)

        # The proxy starts once the instances are ready, or its first health check would keep
        # them out of the rotation for a health interval.
        config = workdir / "Caddyfile"
        config.write_text(
            caddyfile(
                admin_port=free_port(),
                http_port=free_port(),
                https_port=lb_port,
                ca=ca,
                upstreams=[a.port, b.port],
                pinned={pin_a: a.port, pin_b: b.port},
            )
        )
        caddy_home = workdir / "caddy"
        caddy_env = {
            **os.environ,
            "XDG_DATA_HOME": str(caddy_home / "data"),
            "XDG_CONFIG_HOME": str(caddy_home / "config"),
        }
        processes.start("caddy", [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"], caddy_env)
        sites = [f"{url}/readyz" for url in (issuer, a.url, b.url)]
        wait_until(lambda: all(answers(url) for url in sites), "the proxy's sites")
        district = District(pooled_url, keys_dir, registered["client_id"], registered["client_secret"])
        yield Stack(issuer, database, district, a, b, worker, processes, redis, receiver, env)


@pytest.fixture(autouse=True)
def stack_whole_after(stack: Stack) -> Iterator[None]:
    """Every test leaves both instances, the worker and the proxy running."""
    yield
    assert all(i.alive() for i in stack.instances), stack.logs()
    assert all(p.alive() for p in stack.processes.started), stack.logs()


# --- a browser and a portal, step by step ------------------------------------------------
class Refused(Exception):
    """A step of a sign-in got another answer than a working provider gives."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(describe(response))
        self.status = response.status_code


class Cut(Exception):
    """A response whose body ended early: the instance answering died while sending it.

    Caddy before 2.7.6 (Debian's is 2.6.2) ends such a response as if it were whole (caddy#5951),
    so the client reads a 200 whose body does not parse; later versions close the connection,
    which ``requests`` reports as a ChunkedEncodingError.
    """


def step(http: requests.Session, method: str, url: str, expect: int, **kwargs: Any) -> requests.Response:
    response = http.request(method, url, allow_redirects=False, timeout=HTTP_TIMEOUT, **kwargs)
    if response.status_code != expect:
        raise Refused(response)
    return response


@dataclass(frozen=True)
class Route:
    """The proxy's site each step of a sign-in goes to (the issuer's, or one instance's)."""

    issuer: str
    authorize: str
    signin_page: str
    signin_post: str
    resume: str
    token: str

    @classmethod
    def through(cls, issuer: str, url: str) -> Route:
        return cls(issuer, url, url, url, url, url)


def redeem(url: str, district: District, auth: AuthRequest, code: str, **kwargs: Any) -> dict[str, Any]:
    """The portal's POST of ``code`` to ``url``'s /token."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": auth.redirect_uri,
        "code_verifier": auth.verifier,
    }
    with requests.Session() as portal:
        answer = step(
            portal,
            "POST",
            f"{url}/token",
            200,
            data=form,
            auth=(district.client_id, district.client_secret),
            **kwargs,
        )
    try:
        tokens: dict[str, Any] = answer.json()
    except ValueError as error:
        raise Cut(describe(answer)) from error
    return tokens


def sign_in(
    browser: requests.Session, route: Route, district: District, *, trace: str | None = None
) -> tuple[AuthRequest, dict[str, Any]]:
    """A whole sign-in, each step at its site of ``route``; return the request and the tokens.

    With ``trace``, each step sends an ``X-Request-ID`` naming it, which the request log of the
    instance that answered repeats.
    """

    def named(name: str) -> dict[str, Any]:
        return {"headers": {"X-Request-ID": f"{trace}-{name}"}} if trace else {}

    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri)
    started = step(browser, "GET", auth.url(route.authorize), 303, **named("authorize"))
    request_id = redirect_params(started.headers["Location"])["request"]
    page_url = f"{route.signin_page}/signin?{urlencode({'request': request_id})}"
    page = step(browser, "GET", page_url, 200, **named("signin-page"))
    form = {
        "csrf_token": form_token(page),
        "request_id": request_id,
        "username": district.username,
        "password": district.password,
    }
    signed_in = step(browser, "POST", f"{route.signin_post}/signin", 303, data=form, **named("signin-post"))
    resume_path = urlsplit(signed_in.headers["Location"]).path
    resumed = step(browser, "GET", route.resume + resume_path, 302, **named("resume"))
    callback = resumed.headers["Location"]
    assert callback.startswith(f"{district.redirect_uri}?"), callback
    params = redirect_params(callback)
    assert params["state"] == auth.state and params["iss"] == route.issuer, params  # RFC 9207
    return auth, redeem(route.token, district, auth, params["code"], **named("token"))


def form_token(page: requests.Response) -> str:
    try:
        return csrf_token(page.text)
    except AssertionError as error:
        raise Cut(describe(page)) from error


def silent_sign_in(browser: requests.Session, url: str, district: District) -> dict[str, Any] | None:
    """``prompt=none`` at ``url`` and the code redeemed there: the tokens while the browser's
    session is valid, None once it is not (``login_required``)."""
    auth = AuthRequest(district.client_id, redirect_uri=district.redirect_uri, extra={"prompt": "none"})
    answer = step(browser, "GET", auth.url(url), 302)
    params = redirect_params(answer.headers["Location"])
    if "code" not in params:
        assert params.get("error") == "login_required", params
        return None
    return redeem(url, district, auth, params["code"])


def jwks(url: str) -> Any:
    with requests.Session() as http:
        return fetch_json(http, f"{url}/jwks.json")


def kid_of(token: str) -> str:
    value: str = jws.extract_compact(token.encode()).headers()["kid"]
    return value


def reports(instance: Instance, check: str, value: str) -> Callable[[], bool]:
    """Whether ``instance``'s /readyz says ``value`` for ``check`` (``database``, ``redis``)."""

    def holds() -> bool:
        with requests.Session() as http:
            answer = http.get(f"{instance.url}/readyz", timeout=HTTP_TIMEOUT)
        return bool(answer.json()[check] == value)

    return holds


# --- load through the proxy --------------------------------------------------------------
@dataclass
class Load:
    """Sign-ins on ``threads`` threads through the proxy's load-balanced site, until the block ends.

    Each sign-in ends "completed", "cut" (a response ended early: see ``Cut``) or with the status
    of the step that failed. A connection error (the proxy itself not answering) or anything else
    is recorded as such, and fails the test.
    """

    issuer: str
    district: District
    threads: int = LOAD_THREADS
    outcomes: list[str] = field(default_factory=list)
    browsers: list[requests.Session] = field(default_factory=list)  # of completed sign-ins
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads_running: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self.threads_running = [threading.Thread(target=self.keep_signing_in) for _ in range(self.threads)]
        for thread in self.threads_running:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        for thread in self.threads_running:
            thread.join(timeout=2 * HTTP_TIMEOUT)

    def keep_signing_in(self) -> None:
        route = Route.through(self.issuer, self.issuer)
        while not self.stopping.is_set():
            browser = requests.Session()
            try:
                sign_in(browser, route, self.district)
            except Refused as refused:
                outcome = str(refused.status)
            except (Cut, requests.exceptions.ChunkedEncodingError):
                outcome = "cut"
            except requests.RequestException as error:
                outcome = f"connection error: {error!r}"
            except Exception as error:  # recorded, and the test fails on it: the loop must go on
                outcome = f"unexpected: {error!r}"
            else:
                outcome = "completed"
            # Its connections close; its cookies (the session at the provider) stay for later checks.
            browser.close()
            with self.lock:
                self.outcomes.append(outcome)
                if outcome == "completed":
                    self.browsers.append(browser)

    def completed(self) -> int:
        with self.lock:
            return self.outcomes.count("completed")

    def sessions(self) -> list[requests.Session]:
        with self.lock:
            return list(self.browsers)

    def wait_for_more(self, count: int, what: str) -> None:
        target = self.completed() + count
        wait_until(lambda: self.completed() >= target, what, timeout=2 * WAIT)

    def ended(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def tally(self, since: int = 0, until: int | None = None) -> Counter[str]:
        """The outcomes of the sign-ins that ended from the ``since``-th to before the ``until``-th."""
        with self.lock:
            return Counter(self.outcomes[since:until])


# --- the tests ---------------------------------------------------------------------------
def test_a_sign_in_begun_on_one_instance_finishes_on_the_other(stack: Stack) -> None:
    a, b = stack.a.url, stack.b.url
    route = Route(stack.issuer, authorize=a, signin_page=a, signin_post=b, resume=a, token=b)
    trace = f"across-{secrets.token_hex(4)}"
    with requests.Session() as browser:
        auth, tokens = sign_in(browser, route, stack.district, trace=trace)
    # Each step was answered by the instance its site names, and the other one never saw it.
    for name, answered in [
        ("authorize", "a"),
        ("signin-page", "a"),
        ("signin-post", "b"),
        ("resume", "a"),
        ("token", "b"),
    ]:
        instance, other = (stack.a, stack.b) if answered == "a" else (stack.b, stack.a)
        assert instance.served(f"{trace}-{name}") and not other.served(f"{trace}-{name}"), name
    # The ID token verifies against either instance's JWKS; the access token works at the other.
    for url in (a, b):
        verified = verify_id_token(
            tokens["id_token"],
            jwks(url),
            issuer=stack.issuer,
            client_id=stack.district.client_id,
            nonce=auth.nonce,
        )
    with requests.Session() as portal:
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        userinfo = step(portal, "GET", f"{a}/userinfo", 200, headers=bearer)
    assert userinfo.json()["sub"] == verified.claims["sub"]


def post_signin(url: str, username: str, password: str) -> requests.Response:
    """A sign-in on its own (no authorization request) from a browser new to the provider."""
    with requests.Session() as browser:
        page = step(browser, "GET", f"{url}/signin", 200)
        form = {
            "csrf_token": csrf_token(page.text),
            "request_id": "",
            "username": username,
            "password": password,
        }
        return browser.post(f"{url}/signin", data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)


def wrong_password(url: str, username: str) -> str:
    """A wrong password at ``url``: "invalid" or "locked", as the page says."""
    answer = post_signin(url, username, f"wrong-{secrets.token_hex(4)}")
    assert answer.status_code == 200, describe(answer)
    assert (INVALID in answer.text) != (LOCKED in answer.text), describe(answer)
    return "locked" if LOCKED in answer.text else "invalid"


def locked_at(url: str, username: str) -> bool:
    """Whether the right password at ``url`` meets the lock (a success resets the count)."""
    answer = post_signin(url, username, PASSWORD)
    if answer.status_code == 303:
        return False
    assert answer.status_code == 200 and LOCKED in answer.text, describe(answer)
    return True


def account_locked_events(database: str) -> int:
    admin = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{admin}/{database}") as conn:
        row = conn.execute("SELECT count(*) FROM audit_event WHERE name = 'account.locked'").fetchone()
    assert row is not None
    return int(row[0])


def alternating_failures(stack: Stack, username: str, count: int, *, first: int = 0) -> list[str]:
    """``count`` wrong passwords, one instance then the other; return what each page said."""
    urls = [stack.a.url, stack.b.url]
    return [wrong_password(urls[n % 2], username) for n in range(first, first + count)]


def count_to_the_lock(stack: Stack, username: str) -> None:
    """Alternate wrong passwords between the instances: one short of the threshold neither
    instance locks (the right password works, and resets the count); at the threshold both do."""
    short = alternating_failures(stack, username, THRESHOLD - 1)
    assert short == ["invalid"] * (THRESHOLD - 1)
    assert not locked_at([stack.a.url, stack.b.url][(THRESHOLD - 1) % 2], username)
    locks_before = account_locked_events(stack.database)
    reaching = alternating_failures(stack, username, THRESHOLD)
    # The attempt that reaches the threshold may show either message; none before it is locked.
    assert reaching[: THRESHOLD - 1] == ["invalid"] * (THRESHOLD - 1), reaching
    assert locked_at(stack.a.url, username) and locked_at(stack.b.url, username)
    assert account_locked_events(stack.database) == locks_before + 1


def test_the_lockout_counts_exactly_across_both_instances(stack: Stack) -> None:
    count_to_the_lock(stack, LEE)


def listed_keys(stack: Stack) -> dict[str, dict[str, str]]:
    """``idp keys list``: the RS256 keys by state (one per state at most, but retired ones)."""
    listed: list[dict[str, str]] = json.loads(run_idp(stack.operator_env, "keys", "list", "--json"))
    return {e["state"]: e for e in listed if e["alg"] == "RS256"}


def test_a_key_rotation_is_picked_up_by_both_instances_within_the_pickup_time(stack: Stack) -> None:
    listed = listed_keys(stack)
    old, upcoming = listed["active"]["kid"], listed["next"]
    new = upcoming["kid"]
    # The key set lives in the database alone: no instance wrote a keys folder.
    assert not stack.district.keys_dir.exists()
    # Published before it signs: both instances list the next key already.
    for instance in stack.instances:
        assert new in {k["kid"] for k in jwks(instance.url)["keys"]}, instance.name
    # A browser signed in at each instance: a poll there is a silent sign-in, the ID token's kid.
    browsers = {instance.name: requests.Session() for instance in stack.instances}

    def signing_kid(instance: Instance) -> str:
        tokens = silent_sign_in(browsers[instance.name], instance.url, stack.district)
        assert tokens is not None
        return kid_of(tokens["id_token"])

    try:
        for instance in stack.instances:
            sign_in(browsers[instance.name], Route.through(stack.issuer, instance.url), stack.district)
        assert {signing_kid(i) for i in stack.instances} == {old}
        # The next key may sign once published for the lead time; `idp keys rotate` refuses before.
        ready_at = datetime.fromisoformat(upcoming["created_at"]) + LEAD
        wait_until(lambda: datetime.now(ready_at.tzinfo) > ready_at, "the next key's lead time")
        output = run_idp(stack.operator_env, "keys", "rotate", "--alg", "RS256")
        rotated = time.monotonic()
        assert output.startswith(f"RS256: {new} signs now; {old} retired"), output
        picked_up: dict[str, float] = {}

        def both_switched() -> bool:
            for instance in stack.instances:
                if instance.name not in picked_up and signing_kid(instance) == new:
                    picked_up[instance.name] = time.monotonic() - rotated
            return len(picked_up) == len(stack.instances)

        wait_until(both_switched, "both instances signing with the new key", timeout=PICKUP_BOUND)
    finally:
        for browser in browsers.values():
            browser.close()
    # The retired key stays published beside the new one, for the tokens it signed.
    for instance in stack.instances:
        assert {old, new} <= {k["kid"] for k in jwks(instance.url)["keys"]}, instance.name
    print(  # the figures the report quotes (pytest -s)
        "new key in use "
        + ", ".join(f"by {name} {seconds:.2f} s" for name, seconds in picked_up.items())
        + f" after `idp keys rotate` returned (bound {PICKUP_BOUND:.0f} s)"
    )


def test_a_logout_at_the_other_instance_reaches_the_portal_through_the_back_channel(stack: Stack) -> None:
    already = len(stack.receiver.received)
    with requests.Session() as browser:
        auth, tokens = sign_in(browser, Route.through(stack.issuer, stack.a.url), stack.district)
        hint = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": POST_LOGOUT, "state": "bye"}
        # RP-initiated logout at the other instance: the hint names the session, so no question.
        signed_out = step(browser, "GET", f"{stack.b.url}/logout?{urlencode(hint)}", 303)
        assert signed_out.headers["Location"] == f"{POST_LOGOUT}?state=bye"
        assert silent_sign_in(browser, stack.a.url, stack.district) is None
    received = stack.receiver.wait_for(already + 1, timeout=WAIT)[already:]
    assert len(received) == 1, received
    keys = KeySet.import_key_set(jwks(stack.issuer))
    id_token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    logout = jwt.decode(received[0].form["logout_token"][0], keys, algorithms=["RS256"])
    assert logout.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": stack.issuer},
        aud={"essential": True, "value": stack.district.client_id},
        iat={"essential": True},
        jti={"essential": True},
        sid={"essential": True, "value": id_token.claims["sid"]},
        sub={"essential": True, "value": id_token.claims["sub"]},
    ).validate(logout.claims)
    assert logout.claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in logout.claims
    assert auth.nonce == id_token.claims["nonce"]


def stop_mid_load(stack: Stack, load: Load, instance: Instance, signum: signal.Signals) -> int:
    """Once ``instance`` has issued tokens under the load, stop it with ``signum``; wait for more
    sign-ins to complete without it, and start it again. Return how many sign-ins had ended when
    the signal went."""
    wait_until(
        lambda: instance.tokens_issued_this_run() >= 2, f"{instance.name} serving the load", timeout=2 * WAIT
    )
    signalled_at = load.ended()
    instance.stop(signum)
    load.wait_for_more(FLOWS_AFTER, f"sign-ins after {instance.name} got {signum.name}")
    instance.restart()
    return signalled_at


def test_stopping_an_instance_mid_load_loses_no_session_and_answers_no_500(stack: Stack) -> None:
    with Load(stack.issuer, stack.district) as load:
        load.wait_for_more(FLOWS_AFTER, "sign-ins before the stops")
        before = load.sessions()
        stop_mid_load(stack, load, stack.a, signal.SIGTERM)
        killed_at = stop_mid_load(stack, load, stack.a, signal.SIGKILL)
    graceful, crashed = load.tally(until=killed_at), load.tally(since=killed_at)
    print(f"sign-ins before and through SIGTERM: {dict(graceful)}; from SIGKILL on: {dict(crashed)}")
    assert set(graceful) <= {"completed", "502", "503"}, graceful
    # A crash cuts the responses its instance was sending: after the kill, and at most one per
    # thread, since each has one request in flight.
    assert set(crashed) <= {"completed", "502", "503", "cut"}, crashed
    assert crashed["cut"] <= LOAD_THREADS, crashed
    # Every session made before the stops, and a sample of those made while they happened, is
    # valid at the instance that never stopped.
    during = load.sessions()[len(before) :]
    for browser in before + during[:: max(1, len(during) // SESSIONS_SAMPLED)]:
        assert silent_sign_in(browser, stack.b.url, stack.district) is not None


def process_ids(stack: Stack) -> dict[str, int]:
    return {i.name: i.running().process.pid for i in stack.instances} | {"worker": stack.worker.process.pid}


def terminate_database_connections(database: str) -> int:
    """End every connection to ``database`` (PgBouncer's, so every instance's and the worker's),
    as a PostgreSQL restart would; return once the backends are gone, with how many there were."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
        pids = [pid for (pid,) in rows]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: (
                admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
                is None
            ),
            "the terminated backends to exit",
        )
    return len(pids)


def test_ending_every_database_connection_is_survived_without_a_restart(stack: Stack) -> None:
    before = process_ids(stack)
    with Load(stack.issuer, stack.district) as load:
        load.wait_for_more(FLOWS_AFTER, "sign-ins before the connections end")
        assert terminate_database_connections(stack.database) >= 1
        load.wait_for_more(FLOWS_AFTER, "sign-ins after the connections ended")
    tally = load.tally()
    print(f"sign-ins while every database connection ended: {dict(tally)}")
    # No instance stops, so the proxy has nothing to answer 502 for: a sign-in completes or meets a 503.
    assert set(tally) <= {"completed", "503"}, tally
    # Nothing restarted, and each instance answers from the database on its own site again.
    assert process_ids(stack) == before
    for instance in stack.instances:
        wait_until(reports(instance, "database", "ok"), f"{instance.name}'s database ok")
        with requests.Session() as browser:
            sign_in(browser, Route.through(stack.issuer, instance.url), stack.district)


def test_a_sentinel_failover_of_redis_is_survived(stack: Stack) -> None:
    # Lee is locked since the lockout test (run alone, this test locks Lee first).
    if not locked_at(stack.a.url, LEE):
        count_to_the_lock(stack, LEE)
    locks_before = account_locked_events(stack.database)
    # Max's count starts on the old master and ends on the new one.
    before = alternating_failures(stack, MAX, THRESHOLD - 2)
    assert before == ["invalid"] * (THRESHOLD - 2)
    old_master = stack.redis.master_port()
    with Load(stack.issuer, stack.district) as load:
        load.wait_for_more(FLOWS_AFTER, "sign-ins before the failover")
        stack.redis.fail_over(timeout=WAIT)
        load.wait_for_more(FLOWS_AFTER, "sign-ins after the failover")
    assert stack.redis.master_port() != old_master
    tally = load.tally()
    print(f"sign-ins through the failover: {dict(tally)}")
    # The database's counters stand in while Redis changes masters: no sign-in notices.
    assert set(tally) == {"completed"}, tally
    # Each instance is on the new master (after a failed command it tries Redis again a second
    # later; /readyz asks at once): from here every count is Redis's again.
    for instance in stack.instances:
        wait_until(reports(instance, "redis", "ok"), f"{instance.name} on the new master")
    # The lock from before the failover holds on both instances.
    assert locked_at(stack.a.url, LEE) and locked_at(stack.b.url, LEE)
    # Max's count went across: the threshold's last failure but one is still refused as invalid,
    # and the last one locks, on both instances.
    after = alternating_failures(stack, MAX, 2, first=THRESHOLD - 2)
    assert after[0] == "invalid", after
    assert locked_at(stack.a.url, MAX) and locked_at(stack.b.url, MAX)
    assert account_locked_events(stack.database) == locks_before + 1
