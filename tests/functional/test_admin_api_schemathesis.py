"""The admin API fuzzed from its own OpenAPI document (schemathesis), through the Flask app, on
PostgreSQL, with an admin:write token: no response is a 5xx, and every response matches the
document (status, content type, headers, body)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from idp.admin.openapi import openapi_document
from idp.extensions import db
from idp.oauth.clients import ClientSpec
from idp.web.context import services
from tests.functional.oidc import basic_auth

schema = schemathesis.openapi.from_dict(openapi_document("http://localhost"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The fuzzing runs on PostgreSQL, the production database, only.
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def world(app: Any, client: Any, make_account: Any, make_student: Any) -> dict[str, Any]:
    """A parent linked to a student, and an admin:write token to fuzz with."""
    student = make_student()
    parent = make_account()
    services().guardianship().link(parent, student, "Mother")
    registered = (
        services()
        .admin_clients()
        .register(ClientSpec(name="Fuzzer", redirect_uris=[], admin_scope="admin:write"))
    )
    db.session.commit()
    token = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "admin:write"},
        headers=basic_auth(registered.client.client_id, registered.client_secret),
    ).get_json()["access_token"]
    return {
        "headers": {"Authorization": f"Bearer {token}"},
        "account_id": parent.id,
        "sis_id": student.sis_id,
    }


@schema.parametrize()
@settings(
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_admin_api_matches_its_openapi_document(case: Any, app: Any, world: dict[str, Any]) -> None:
    response = case.call(app=app, headers=world["headers"])
    case.validate_response(response, checks=CHECKS)
    # The same request about an account and a student that exist, so that the 2xx answers are
    # fuzzed too (random ids find nothing).
    real = {"account_id": world["account_id"], "sis_id": world["sis_id"]}
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and case.path_parameters and set(case.path_parameters) <= set(real):
        case.path_parameters = {name: real[name] for name in case.path_parameters}
        response = case.call(app=app, headers=world["headers"])
        case.validate_response(response, checks=CHECKS)
