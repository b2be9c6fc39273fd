"""What the migration tests share: an app on an empty database of the test module's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from idp import create_app
from idp.extensions import db
from tests.conftest import empty_database, settings_for_tests


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_app(request: pytest.FixtureRequest, tmp_path: Path, keys_dir: Path) -> Iterator[Flask]:
    """An app on an empty database that no other test module (nor pytest process) shares."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with empty_database(request.param, tmp_path, f"idp_test_{module}_{os.getpid()}") as url:
        app = create_app(settings_for_tests(url, keys_dir))
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
