"""The load of ``bench.surge``: Locust users who are parents signing in through their portal.

Each user is one parent's browser and the portal behind it, one flow after another, each in a
fresh browser (no cookies): ``GET /authorize`` (PKCE S256, state, nonce) → ``GET /signin`` →
``POST /signin`` (a share of parents mistype their password first) → ``GET
/authorize/continue/<id>`` → the code at the portal's redirect URI → ``POST /token`` (client
secret, code verifier) → ``GET /userinfo``. A share of users' turns are a registration instead:
``GET /register``, then ``POST /register`` with a student's Access ID and Access Password.

Run by ``bench.surge`` as a process of its own (Locust patches the process for gevent)::

    python -m bench.surge_load --plan plan.json --users 8 --seconds 30 [--flows-per-second 12]

It prints ``measuring`` when the users are all running (after ``--warmup`` seconds), ``done``
at the end of the measured window, and then one JSON line: the whole flows' and registrations'
durations in that window, the failures, and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# Locust patches the process for gevent on import (nothing above imports ssl).
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.env import Environment

# The provider's forms write type before value; Canaille's write it before the name.
CSRF_FIELD = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Which parent, whether they mistype, whether a turn registers: draws, not secrets.
DRAW = random.Random()  # noqa: S311


def from_page(path: str) -> dict[str, str]:
    """A form's headers as a browser sends them from the page at ``path`` (Referer included:
    Flask-WTF refuses a form posted over https without one, as Canaille's are)."""
    return {**FORM, "Referer": PLAN.issuer + path}


class FlowFailed(Exception):
    """A step answered something a working provider does not."""


@dataclass
class Plan:
    """What the load needs to know of the stack ``bench.surge`` started (``--plan``)."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str
    password: str
    usernames: list[str]
    wrong_password_share: float
    register_share: float
    access_password: str
    # Students no one has registered with yet: (Access ID, first name); each serves one registration.
    registrations: list[tuple[str, str]]
    # Whose pages: "provider" (this project's) or "canaille" (bench.surge_canaille).
    peer: str = "provider"

    @classmethod
    def read(cls, path: str) -> Plan:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        data["registrations"] = [tuple(row) for row in data["registrations"]]
        return cls(**data)


@dataclass
class Outcomes:
    """What happened in the measured window (wall seconds of each whole flow and registration)."""

    measuring: bool = False
    flows: list[float] = field(default_factory=list)
    registrations: list[float] = field(default_factory=list)
    wrong_passwords: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # Each request's milliseconds, by step name (Locust's response_time).
    requests: dict[str, list[float]] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        if self.measuring:
            self.failures[what] = self.failures.get(what, 0) + 1


PLAN: Plan
OUTCOMES = Outcomes()


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def expect(response: Any, status: int, step: str) -> Any:
    if response.status_code != status:
        raise FlowFailed(f"{step}: {response.status_code}")
    return response


class Parent(FastHttpUser):
    """A parent's browser and their portal; the host is the provider's issuer (behind the proxy)."""

    # The proxy's certificate comes from its own local CA: the client does not check it.
    insecure = True
    network_timeout = 120.0
    connection_timeout = 120.0
    wait_time = constant(0)

    @task
    def turn(self) -> None:
        self.client.cookiejar.clear()  # a fresh browser every time
        registering = DRAW.random() < PLAN.register_share and PLAN.registrations
        started = time.perf_counter()
        try:
            if registering:
                self.register(*PLAN.registrations.pop())
            else:
                self.sign_in_flow()
        except FlowFailed as failed:
            OUTCOMES.fail(str(failed))
            return
        if OUTCOMES.measuring:
            (OUTCOMES.registrations if registering else OUTCOMES.flows).append(time.perf_counter() - started)

    def sign_in_flow(self) -> None:
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        query = self.authorize_query(verifier, state)
        sent = self.client.get(f"/authorize?{query}", name="GET /authorize", allow_redirects=False)
        request_id = query_of(expect(sent, 303, "GET /authorize").headers["Location"]).get("request", "")
        page = self.client.get(f"/signin?request={request_id}", name="GET /signin")
        token = self.csrf_token(expect(page, 200, "GET /signin").text, "GET /signin")
        username = DRAW.choice(PLAN.usernames)
        if DRAW.random() < PLAN.wrong_password_share:
            wrong = self.post_signin(token, username, PLAN.password + "!", request_id)
            expect(wrong, 200, "POST /signin (wrong password)")
            if OUTCOMES.measuring:
                OUTCOMES.wrong_passwords += 1
        signed_in = expect(self.post_signin(token, username, PLAN.password, request_id), 303, "POST /signin")
        continued = urlsplit(signed_in.headers["Location"]).path
        issued = self.client.get(continued, name="GET /authorize/continue", allow_redirects=False)
        answer = query_of(expect(issued, 302, "GET /authorize/continue").headers["Location"])
        if answer.get("state") != state or "code" not in answer:
            raise FlowFailed("GET /authorize/continue: no code")
        access_token = self.redeem("/token", answer["code"], verifier)
        claims = self.client.get(
            "/userinfo", name="GET /userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        expect(claims, 200, "GET /userinfo")

    def authorize_query(self, verifier: str, state: str) -> str:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        return urlencode(
            {
                "response_type": "code",
                "client_id": PLAN.client_id,
                "redirect_uri": PLAN.redirect_uri,
                "scope": PLAN.scope,
                "state": state,
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )

    def redeem(self, path: str, code: str, verifier: str) -> str:
        """The portal's half: the code for tokens, then userinfo with the access token."""
        tokens = self.client.post(
            path,
            name="POST /token",
            data=urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": PLAN.redirect_uri,
                    "code_verifier": verifier,
                }
            ),
            headers=FORM,
            auth=(PLAN.client_id, PLAN.client_secret),
        )
        access_token: str = expect(tokens, 200, "POST /token").json()["access_token"]
        return access_token

    def post_signin(self, token: str, username: str, password: str, request_id: str) -> Any:
        form = {"csrf_token": token, "username": username, "password": password, "request_id": request_id}
        return self.client.post(
            "/signin",
            name="POST /signin",
            data=urlencode(form),
            headers=from_page("/signin"),
            allow_redirects=False,
        )

    def register(self, access_id: str, student_name: str) -> None:
        page = self.client.get("/register", name="GET /register")
        token = self.csrf_token(expect(page, 200, "GET /register").text, "GET /register")
        handle = secrets.token_hex(6)
        form = {
            "csrf_token": token,
            "first_name": "Surge",
            "last_name": f"Parent {handle}",
            "email": f"surge.{handle}@example.org",
            "username": f"surge.new.{handle}",
            "password": PLAN.password,
            "password_confirm": PLAN.password,
            "students-0-name": student_name,
            "students-0-access_id": access_id,
            "students-0-access_password": PLAN.access_password,
            "students-0-relationship": "Mother",
            "request_id": "",
        }
        answer = self.client.post(
            "/register",
            name="POST /register",
            data=urlencode(form),
            headers=from_page("/register"),
            allow_redirects=False,
        )
        expect(answer, 303, "POST /register")

    @staticmethod
    def csrf_token(html: str, step: str) -> str:
        match = CSRF_FIELD.search(html)
        if match is None:
            raise FlowFailed(f"{step}: no csrf_token")
        return match.group(1)


class CanailleParent(Parent):
    """The same parent and portal at Canaille: its login asks the username, then the password."""

    def sign_in_flow(self) -> None:
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        sent = self.client.get(
            f"/oauth/authorize?{self.authorize_query(verifier, state)}",
            name="GET /oauth/authorize",
            allow_redirects=False,
        )
        expect(sent, 302, "GET /oauth/authorize")
        page = self.client.get("/login", name="GET /login")
        token = self.csrf_token(expect(page, 200, "GET /login").text, "GET /login")
        username = DRAW.choice(PLAN.usernames)
        form = self.password_form(token, username)
        if DRAW.random() < PLAN.wrong_password_share:
            wrong = self.post_password(form, PLAN.password + "!")
            expect(wrong, 200, "POST /auth/password (wrong password)")
            if OUTCOMES.measuring:
                OUTCOMES.wrong_passwords += 1
            # A failed password ends Canaille's login: the username is asked again.
            form = self.password_form(token, username)
        signed_in = expect(self.post_password(form, PLAN.password), 302, "POST /auth/password")
        issued = self.client.get(
            urlsplit(signed_in.headers["Location"])._replace(scheme="", netloc="").geturl(),
            name="GET /oauth/authorize (signed in)",
            allow_redirects=False,
        )
        answer = query_of(expect(issued, 302, "GET /oauth/authorize (signed in)").headers["Location"])
        if answer.get("state") != state or "code" not in answer:
            raise FlowFailed("GET /oauth/authorize (signed in): no code")
        access_token = self.redeem("/oauth/token", answer["code"], verifier)
        claims = self.client.get(
            "/oauth/userinfo", name="GET /oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        expect(claims, 200, "GET /oauth/userinfo")

    def password_form(self, token: str, username: str) -> str:
        """Send the username; return the password page's CSRF token."""
        login = self.client.post(
            "/login",
            name="POST /login",
            data=urlencode({"csrf_token": token, "login": username}),
            headers=from_page("/login"),
            allow_redirects=False,
        )
        expect(login, 302, "POST /login")
        page = self.client.get("/auth/password", name="GET /auth/password")
        return self.csrf_token(expect(page, 200, "GET /auth/password").text, "GET /auth/password")

    def post_password(self, token: str, password: str) -> Any:
        return self.client.post(
            "/auth/password",
            name="POST /auth/password",
            data=urlencode({"csrf_token": token, "password": password}),
            headers=from_page("/auth/password"),
            allow_redirects=False,
        )


def _note_request(name: str, response_time: float, exception: Exception | None, **_: Any) -> None:
    if exception is not None:
        OUTCOMES.fail(f"{name}: {type(exception).__name__}")
    elif OUTCOMES.measuring:
        OUTCOMES.requests.setdefault(name, []).append(response_time)


events.request.add_listener(_note_request)  # type: ignore[no-untyped-call]


def run(users: int, warmup: float, seconds: float, flows_per_second: float | None) -> dict[str, Any]:
    """Run ``users`` parents; measure ``seconds`` after ``warmup``; return the outcomes."""
    user_class = CanailleParent if PLAN.peer == "canaille" else Parent
    if flows_per_second:
        # Paced: each user starts a turn every users/rate seconds (Locust's constant_throughput).
        user_class.wait_time = constant_throughput(flows_per_second / users)
    environment = Environment(user_classes=[user_class], host=PLAN.issuer, events=events)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    # time.sleep is gevent's once Locust has patched the process: the users run meanwhile.
    time.sleep(warmup)
    cpu_before = time.process_time()
    print("measuring", flush=True)
    OUTCOMES.measuring = True
    measured_from = time.perf_counter()
    time.sleep(seconds)
    OUTCOMES.measuring = False
    window = time.perf_counter() - measured_from
    cpu = time.process_time() - cpu_before
    print("done", flush=True)
    runner.quit()
    return {
        "users": users,
        "window_seconds": window,
        "flows": OUTCOMES.flows,
        "registrations": OUTCOMES.registrations,
        "wrong_passwords": OUTCOMES.wrong_passwords,
        "failures": OUTCOMES.failures,
        "requests": OUTCOMES.requests,
        "client_cpu_seconds": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    global PLAN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--plan", required=True, help="the JSON plan bench.surge wrote")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--flows-per-second", type=float, help="pace the users to this rate in all")
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args(argv)
    PLAN = Plan.read(args.plan)
    DRAW.seed(args.seed)
    result = run(args.users, args.warmup, args.seconds, args.flows_per_second)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
