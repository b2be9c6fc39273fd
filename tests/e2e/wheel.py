"""The project as ``pip install .`` (not editable) gives it: a wheel in a new virtualenv.

The wheel is built from a copy of the sources (a stale ``build/`` in the checkout cannot leak into
it) and installed with ``--no-deps`` into a new virtualenv that borrows this one's dependencies
through a ``.pth`` file, so nothing of the checkout's ``idp`` is found. Tests run it from a
folder outside the checkout, with an environment from ``outside_env``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("idp", "relying_party_demo")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command`` and return its stdout; fail the test with its output on a non-zero exit."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    return result.stdout


def build_wheel(source: Path, dist: Path) -> Path:
    """Copy what ``pip install .`` reads into ``source``, build the wheel offline into ``dist``."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in SOURCES:
        shutil.copytree(ROOT / name, source / name, ignore=SKIPPED)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    run([*pip_wheel, "--wheel-dir", str(dist), str(source)], cwd=source)
    (built,) = dist.glob("school_idp-*.whl")
    return built


def install_into_new_venv(wheel: Path, venv: Path) -> Path:
    """Make a virtualenv at ``venv`` holding ``wheel``; it sees this one's dependencies, not its ``idp``."""
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv)
    # Path lines of a .pth file join sys.path after the venv's own site-packages, and the .pth
    # files inside them are not run: this virtualenv's editable hook for idp stays out.
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib.strip()) / "project-dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    run([*pip_install, "--no-deps", "--no-index", str(wheel)], cwd=venv)
    return venv


def outside_env(**settings: str) -> dict[str, str]:
    """This machine's environment without any IDP_, PYTHON*, VIRTUAL_ENV or FLASK_ setting, plus
    ``settings``: the installed provider reads only what the test gives it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IDP_", "PYTHON", "VIRTUAL_ENV", "FLASK_"))
    }
    env.update(settings)
    return env
