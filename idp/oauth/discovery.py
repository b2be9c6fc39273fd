"""The discovery document: exactly what this provider supports (OIDC Discovery 1.0)."""

from __future__ import annotations

from typing import Any

from idp.oauth.claims import claims_supported
from idp.oauth.scopes import SUPPORTED_SCOPES
from idp.runtime import runtime


def discovery_document() -> dict[str, Any]:
    rt = runtime()
    issuer = rt.settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": rt.keys().supported_algorithms(),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims_supported(),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": list(rt.settings.languages),
    }
