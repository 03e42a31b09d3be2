"""`bnexp completion bash`: the script, sourced in a real bash, completes `bnexp run` keys and
values (what TAB would offer, read from COMPREPLY)."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from bnexp.run.completion import value_choices
from bnexp.run.overrides import schema_keys

from conftest import run_cli

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    folder = tmp_path_factory.mktemp("completion")
    done = run_cli(["completion", "bash"], cwd=folder)
    assert done.returncode == 0, done.stderr
    path = folder / "bnexp.bash"
    path.write_text(done.stdout)
    return path


def complete(script, line: str, wordbreaks: str = "\"'><=;|&(:") -> list[str]:
    """COMPREPLY for the command line `line` with the cursor at its end."""
    code = (
        f"source {script}\n"
        f"COMP_WORDBREAKS={shlex.quote(wordbreaks)}\n"
        f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
        "_bnexp_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


def test_keys_and_group_choices_come_from_the_schema_and_configs():
    choices = value_choices()
    schema = {k for k in schema_keys() if not k.endswith(".name")}
    assert set(choices) == schema | {"data", "model", "norm", "optim", "logger", "experiment"}
    assert choices["act"] == ["sigmoid", "relu", "tanh", "identity"]
    assert choices["logger"] == ["none", "tensorboard"] and "fig1" in choices["experiment"]
    assert choices["affine"] == ["true", "false"] and choices["depth"] == []


def test_tab_offers_keys_values_commands_and_flags(script):
    assert complete(script, "bnexp ") == [
        "run",
        "figures",
        "reproduce",
        "completion",
        "--help",
        "--version",
    ]
    assert complete(script, "bnexp r") == ["run", "reproduce"]
    assert sorted(complete(script, "bnexp run de")) == ["depth=", "deterministic=", "device="]
    assert complete(script, "bnexp run device=") == ["auto", "cpu", "cuda"]
    assert complete(script, "bnexp run norm=none optim.") == [
        "optim.lr=",
        "optim.momentum=",
        "optim.weight_decay=",
    ]
    # '=' is a word break in bash's default COMP_WORDBREAKS: the reply replaces what follows it.
    assert complete(script, "bnexp run act=si") == ["sigmoid"]
    assert complete(script, "bnexp run depth=3 logger=") == ["none", "tensorboard"]
    assert complete(script, "bnexp run -m norm=") == sorted(value_choices()["norm"])
    assert complete(script, "bnexp run act=si", wordbreaks=" ") == ["act=sigmoid"]
    assert complete(script, "bnexp run depth=") == []  # a number: nothing to offer
    assert complete(script, "bnexp run --c") == ["--cfg"]
    assert complete(script, "bnexp completion ") == ["bash"]


def test_an_unknown_shell_is_a_user_error(tmp_path):
    done = run_cli(["completion", "fish"], cwd=tmp_path)
    assert done.returncode == 2 and "one of bash (got fish)" in done.stderr
