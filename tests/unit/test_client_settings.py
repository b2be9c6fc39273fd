"""Client registration rules, checked without a database."""

from __future__ import annotations

from typing import Any

import pytest

from idp.oauth.clients import ClientService, ClientSpec, InvalidClientSettings

CALLBACK = "https://portal.example.test/callback"


def spec(**fields: Any) -> ClientSpec:
    values: dict[str, Any] = {"name": "Portal", "redirect_uris": [CALLBACK]}
    values.update(fields)
    return ClientSpec(**values)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"public": True},
        {"allow_no_pkce": True},
        {"id_token_alg": "ES256"},
        {"scope": "openid profile email students offline_access"},
        {"redirect_uris": ["http://127.0.0.1:8080/cb", "com.example.app:/oauth2redirect"]},
        {"post_logout_redirect_uris": ["https://portal.example.test/"]},
        {"backchannel_logout_uri": "https://portal.example.test/backchannel-logout"},
    ],
)
def test_valid_settings_pass(fields):
    ClientService._validate(spec(**fields))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"redirect_uris": ["https://portal.example.test/callback#frag"]}, "fragment"),
        ({"redirect_uris": ["https://portal.example.test/callback#"]}, None),
        ({"post_logout_redirect_uris": ["https://portal.example.test/#bye"]}, "fragment"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "scheme"),
        ({"redirect_uris": ["JavaScript://%0aalert(1)"]}, "scheme"),
        ({"redirect_uris": ["data:text/html,hi"]}, "scheme"),
        ({"backchannel_logout_uri": "javascript:alert(1)"}, "scheme"),
        ({"redirect_uris": ["/callback"]}, "absolute"),
        ({"redirect_uris": ["https:///callback"]}, "absolute"),
        ({"redirect_uris": []}, "redirect-uri"),
        ({"name": "  "}, "name"),
        ({"scope": "openid profile grades"}, "unknown scope 'grades'"),
        ({"scope": "profile email"}, "openid"),
        ({"id_token_alg": "none"}, "id-token-alg"),
        ({"id_token_alg": "HS256"}, "id-token-alg"),
        ({"public": True, "allow_no_pkce": True}, "PKCE"),
    ],
)
def test_invalid_settings_are_refused(fields, reason):
    with pytest.raises(InvalidClientSettings) as caught:
        ClientService._validate(spec(**fields))

    if reason:
        assert reason in str(caught.value)
