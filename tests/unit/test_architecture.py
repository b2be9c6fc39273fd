"""The layers of docs/architecture.md, checked on the source: who may import what.

Adapters (the web layer, views and forms, the CLI, the worker, the Authlib wiring) may import
anything; services never import Flask, the web layer or the composition root; the base modules
import only one another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

IDP = Path(__file__).resolve().parents[2] / "idp"

BASE = (
    "idp.config",
    "idp.clock",
    "idp.tokens",
    "idp.db",
    "idp.audit",
    "idp.policy",
    "idp.counters",
    "idp.logs",
    "idp.metrics",
)
# idp.migrations: Alembic's env.py reads the Flask app's engine and metadata.
ADAPTERS = ("idp.web", "idp.cli", "idp.worker", "idp.services", "idp.extensions", "idp.migrations")
# The Authlib wiring: it binds the domain to Authlib, and takes the composition root.
AUTHLIB_WIRING = ("idp.oauth.server", "idp.oauth.grants", "idp.oauth.endpoints")


def module_name(path: Path) -> str:
    parts = path.relative_to(IDP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(IDP.rglob("*.py")):
        yield module_name(path), ast.parse(path.read_text())


def imports(tree: ast.Module, *, top_level_only: bool = False) -> set[str]:
    """The modules ``tree`` imports (at the top of the module only, if asked)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def is_adapter(name: str) -> bool:
    return (
        name == "idp"
        or within(name, ADAPTERS + AUTHLIB_WIRING)
        or ".views" in name
        or name.endswith(".forms")
    )


def test_only_adapters_import_flask() -> None:
    flaskers = [
        name
        for name, tree in modules()
        if not is_adapter(name)
        and any(module == "flask" or module.startswith(("flask.", "flask_")) for module in imports(tree))
    ]
    assert flaskers == []


def test_services_never_reach_for_the_web_layer_or_the_composition_root() -> None:
    offenders = [
        (name, module)
        for name, tree in modules()
        if not is_adapter(name)
        for module in imports(tree)
        if within(module, ADAPTERS)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("idp.mail", ("idp.accounts", "idp.oauth", "idp.students", "idp.admin")),
        ("idp.keys", ("idp.accounts", "idp.oauth", "idp.students", "idp.mail", "idp.admin")),
        ("idp.accounts", ("idp.oauth", "idp.admin")),
        ("idp.students", ("idp.oauth", "idp.admin")),
        ("idp.oauth", ("idp.admin",)),
    ],
)
def test_lower_packages_do_not_import_higher_ones(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = [
        (name, module)
        for name, tree in modules()
        if within(name, (package,)) and not is_adapter(name)
        for module in imports(tree)
        if within(module, forbidden)
    ]
    assert offenders == []


def test_the_base_modules_import_only_one_another() -> None:
    offenders = [
        (name, module)
        for name, tree in modules()
        if within(name, BASE)
        # idp.db.import_models names every model package inside the function, for the metadata.
        for module in imports(tree, top_level_only=True)
        if module.startswith("idp") and not within(module, BASE)
    ]
    assert offenders == []


def test_the_top_of_the_package_stays_small() -> None:
    top = sorted(path.name for path in IDP.glob("*.py"))
    # Twelve: the nine of the layering, then logs.py and metrics.py (base modules that audit and
    # the counters use) and gunicorn_conf.py (gunicorn imports it before prometheus-client, which
    # no package's __init__ below idp/ would allow).
    assert len(top) <= 12, top
