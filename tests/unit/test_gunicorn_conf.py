"""The production gunicorn settings prepare the metrics folder before any worker exists: a fresh
one per gunicorn unless given, a given one emptied of an earlier run's counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PRINT_FOLDER = (
    "import os, idp.gunicorn_conf as conf;print(os.environ['PROMETHEUS_MULTIPROC_DIR'], conf._MADE_HERE)"
)


def load_settings(env: dict[str, str]) -> tuple[Path, bool]:
    """Import ``idp.gunicorn_conf`` in a process of its own, as gunicorn's master does."""
    clean = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_FOLDER],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    folder, made = result.stdout.split()
    return Path(folder), made == "True"


def test_each_gunicorn_gets_a_fresh_folder_of_its_own():
    first, made_first = load_settings({})
    second, made_second = load_settings({})
    try:
        assert made_first and made_second and first != second
        assert first.is_dir() and not list(first.iterdir())
    finally:
        first.rmdir()
        second.rmdir()


def test_a_given_folder_is_emptied_of_an_earlier_runs_counts(tmp_path: Path):
    stale = tmp_path / "counter_4242.db"
    stale.write_bytes(b"old counts")
    (tmp_path / "notes.txt").write_text("not ours")

    folder, made = load_settings({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})

    assert folder == tmp_path and not made
    assert not stale.exists() and (tmp_path / "notes.txt").exists()
