"""``pip install .`` without ``-e``: the wheel carries everything the provider reads from its package.

The wheel and its virtualenv come from ``tests.e2e.wheel``; the installed provider runs from a
folder outside the checkout, so nothing can be found through the source tree.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from idp.db import Base, import_models, migrations_directory
from tests.e2e.wheel import ROOT, build_wheel, install_into_new_venv, outside_env, run

# One worker builds the wheel and the virtualenv once for the module's tests.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("wheel-install")]

# The packages the wheel ships, with every file in them: modules, templates, static files,
# translations, word lists, fonts, and the migrations.
PACKAGES = ("idp", "relying_party_demo")
# Run by the installed interpreter: where idp and its migrations are, then every file under the
# folders Flask and Flask-Babel read, walked through importlib.resources as they find them.
INSPECT = """
import json
from importlib import resources

import idp
import idp.db


def walk(node, prefix):
    for child in node.iterdir():
        path = f"{prefix}/{child.name}"
        if child.is_dir():
            yield from walk(child, path)
        else:
            child.read_bytes()
            yield path


package = resources.files("idp")
folders = [name for name in ("templates", "static", "translations") if (package / name).is_dir()]
print(json.dumps({
    "package": idp.__file__,
    "migrations": str(idp.db.migrations_directory()),
    "resources": sorted(path for name in folders for path in walk(package / name, f"idp/{name}")),
}))
"""


def resource_files(folder: str) -> set[str]:
    """Return the files under ``folder`` of the checkout (through links), as paths in the wheel.

    Hidden files (``.gitkeep``) stay out, as they do out of setuptools' package-data globs.
    """
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(ROOT / folder, followlinks=True):
        dirnames[:] = [name for name in dirnames if name != "__pycache__"]
        relative = Path(dirpath).relative_to(ROOT)
        found.update(
            (relative / name).as_posix()
            for name in filenames
            if not name.endswith(".pyc") and not name.startswith(".")
        )
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel-source"), tmp_path_factory.mktemp("wheel-dist"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_into_new_venv(wheel, tmp_path_factory.mktemp("wheel-venv"))


def sqlite_env(tmp: Path) -> dict[str, str]:
    return outside_env(
        IDP_DATABASE_URL=f"sqlite:///{tmp / 'idp.db'}",
        IDP_KEYS_DIR=str(tmp / "keys"),
        IDP_SECRET_KEY="wheel-test-secret-key-that-is-long-enough-0123456789",
        IDP_SMTP_URL=f"file://{tmp / 'outbox'}",
        IDP_REDIS_URL="memory://",
    )


def test_wheel_holds_every_file_of_the_packages_with_templates_static_files_and_migrations(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = set().union(*(resource_files(package) for package in PACKAGES))
    assert {"idp/migrations/env.py", "idp/migrations/alembic.ini", "idp/templates/base.html"} <= expected
    assert expected - names == set()
    assert not any("__pycache__" in name or name.startswith("migrations/") for name in names)


def test_installed_idp_db_upgrade_migrates_from_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = sqlite_env(tmp_path)
    found = json.loads(run([str(installed / "bin" / "python"), "-c", INSPECT], cwd=workdir, env=env))
    assert Path(found["package"]).is_relative_to(installed / "lib")
    migrations = Path(found["migrations"])
    assert migrations.is_relative_to(installed / "lib")
    assert not migrations.is_symlink()

    run([str(installed / "bin" / "idp"), "db", "upgrade"], cwd=workdir, env=env)

    import_models()
    head = ScriptDirectory(str(migrations_directory())).get_current_head()
    with sqlite3.connect(tmp_path / "idp.db") as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == head
    assert set(Base.metadata.tables) <= tables


def test_installed_package_reads_its_templates_static_files_and_translations(
    installed: Path, tmp_path: Path
) -> None:
    found = json.loads(
        run([str(installed / "bin" / "python"), "-c", INSPECT], cwd=tmp_path, env=sqlite_env(tmp_path))
    )
    expected = set().union(
        *(resource_files(f"idp/{name}") for name in ("templates", "static", "translations"))
    )
    assert {"idp/templates/base.html", "idp/static/style.css"} <= expected
    assert set(found["resources"]) == expected
