"""docs/tutorial.md runs: its ```python blocks, in order, as one script in an empty folder, with
fewer training steps (the page reads BNEXP_TUTORIAL_STEPS) so that it takes seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

TUTORIAL = REPO / "docs" / "tutorial.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_tutorial_has_its_steps():
    blocks = python_blocks(TUTORIAL.read_text())
    assert len(blocks) == 5
    code = "\n".join(blocks)
    for call in (
        "bnexp.run(",
        "bnexp.load_run(",
        "bnexp.load_runs(",
        "bnexp.steps_to_reach(",
        "savefig(",
    ):
        assert call in code, call


def test_the_readme_links_the_tutorial():
    assert "(docs/tutorial.md)" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_the_tutorials_code_runs(tmp_path):
    script = tmp_path / "tutorial.py"
    script.write_text("\n\n".join(python_blocks(TUTORIAL.read_text())))
    env = {**os.environ, "BNEXP_TUTORIAL_STEPS": "60", "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sweep = tmp_path / "results" / "sweeps" / "tutorial"
    figure = sweep / "layer1_gradient.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert len(list(sweep.glob("norm=*,seed=*/layers.csv"))) == 4
    assert "varying: ['norm']" in done.stdout
    assert re.search(r"norm=batch: final test accuracy [\d.]+%, reaches 90% ", done.stdout)
    assert re.search(r"norm=none: final test accuracy [\d.]+%, reaches 90% ", done.stdout)
