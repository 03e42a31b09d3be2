"""A non-editable install (a wheel) ships the configs and works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

# Drop the editable-install finder so that the wheel's copy is imported, not the work tree.
NO_EDITABLE = (
    "import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in str(f).lower()]; "
)


def test_wheel_ships_configs_and_composes_from_elsewhere(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(REPO),
            "-w",
            str(wheel_dir),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = wheel_dir.glob("bnexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in REPO.glob("configs/**/*.yaml"):
        assert "bnexp/" + str(config.relative_to(REPO)) in names, config
    # Every module of every package (a package missing from pyproject's list is missing here)
    # and every finding declaration with its format description.
    shipped = [*REPO.glob("bnexp/**/*.py"), *REPO.glob("bnexp/reproduce/findings/*.yaml")]
    shipped.append(REPO / "bnexp" / "reproduce" / "findings" / "README.md")
    for source in shipped:
        assert str(source.relative_to(REPO)) in names, source
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = NO_EDITABLE + (
        "import bnexp; assert bnexp.__file__.startswith(sys.argv[1]), bnexp.__file__; "
        "from bnexp.cli import main; sys.exit(main(['run', '--cfg', 'job', 'norm=none', 'depth=7']))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "depth: 7" in result.stdout and "name: none" in result.stdout
