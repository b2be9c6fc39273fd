"""Helpers for driving the provider through the Flask test client like a browser and a portal."""

from __future__ import annotations

import base64
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import PASSWORD, AuthRequest, csrf_token, hidden_field, redirect_params


def sign_in(
    client: FlaskClient, username: str, password: str = PASSWORD, request_id: str = ""
) -> TestResponse:
    page = client.get(f"/signin?request={request_id}" if request_id else "/signin")
    token = csrf_token(page.get_data(as_text=True))
    return client.post(
        "/signin",
        data={
            "csrf_token": token,
            "username": username,
            "password": password,
            "request_id": request_id,
        },
    )


def authorize_as(
    client: FlaskClient, auth: AuthRequest, username: str, password: str = PASSWORD
) -> dict[str, str]:
    """Run /authorize through sign-in (and Allow on a consent page) and return the redirect's query."""
    response = client.get(auth.url())
    if response.status_code == 303 and "/signin" in response.headers["Location"]:
        request_id = redirect_params(response.headers["Location"])["request"]
        response = sign_in(client, username, password, request_id)
        assert response.status_code == 303, response.get_data(as_text=True)
        response = client.get(response.headers["Location"])
    if response.status_code == 200 and b"consent" in response.data:
        html = response.get_data(as_text=True)
        response = client.post(
            "/authorize/consent",
            data={
                "csrf_token": csrf_token(html),
                "request_id": hidden_field(html, "request_id"),
                "allow": "Allow",
            },
        )
    assert response.status_code == 302, (
        response.status_code,
        response.get_data(as_text=True)[:500],
    )
    location = response.headers["Location"]
    assert location.startswith(auth.redirect_uri), location
    return redirect_params(location)


def basic_auth(client_id: str, secret: str | None) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def redeem(
    client: FlaskClient,
    auth: AuthRequest,
    code: str,
    secret: str | None,
    **overrides: Any,
) -> TestResponse:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": auth.redirect_uri,
        "code_verifier": auth.verifier,
    }
    form.update({k: v for k, v in overrides.items() if v is not None})
    for key in [k for k, v in overrides.items() if v is None]:
        form.pop(key, None)
    headers = basic_auth(auth.client_id, secret) if secret else {}
    if not secret:
        form["client_id"] = auth.client_id
    return client.post("/token", data=form, headers=headers)
