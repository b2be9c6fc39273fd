"""The previous sign-in's device over HTTP: in the ID token and userinfo (profile scope), and as
text in Account Preferences."""

from __future__ import annotations

import html
import re

from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import AuthRequest
from tests.functional.oidc import authorize_as, redeem, sign_in

FIREFOX_ON_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_ON_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


def test_the_portal_and_account_preferences_learn_the_previous_sign_ins_device(
    app: Flask, make_account, make_client
):
    make_account(username="dana.rivera")
    portal = make_client()
    first = app.test_client()
    first.environ_base["HTTP_USER_AGENT"] = FIREFOX_ON_WINDOWS
    # An app context per browser: each gets its own CSRF token (Flask-WTF keeps it in ``g``).
    with app.app_context():
        assert sign_in(first, "dana.rivera").status_code == 303

    phone = app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = CHROME_ON_ANDROID
    auth = AuthRequest(portal.client_id, scope="openid profile")
    with app.app_context():
        code = authorize_as(phone, auth, "dana.rivera")["code"]
    tokens = redeem(phone, auth, code, portal.client_secret).get_json()

    keys = KeySet.import_key_set(phone.get("/jwks.json").get_json())
    id_token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"]).claims
    assert id_token["last_login_device"] == "Firefox (Windows)"
    info = phone.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()
    assert info["last_login_device"] == "Firefox (Windows)"
    assert info["last_login_at"] == id_token["last_login_at"]

    page = html.unescape(phone.get("/account").get_data(as_text=True))
    shown = re.search(r'<p class="hint" id="previous-sign-in">([^<]+)</p>', page)
    assert shown is not None, page
    assert shown.group(1).startswith("Previous sign-in: ")
    assert shown.group(1).endswith(" from Firefox (Windows)")
