"""The `bnexp` command: dispatches to `run` (bnexp.run.command, Hydra), `figures` and `reproduce`.
Exits only here and in bnexp.run.command's Hydra task function (a single run's user error)."""

from __future__ import annotations

import sys

from bnexp import __version__
from bnexp.errors import UserError

USAGE = f"""\
bnexp {__version__}: reproduce, measure and explain the published findings about Batch Normalization.

usage:
  bnexp run [OVERRIDES...]                 one training run, e.g. bnexp run norm=batch act=sigmoid depth=10
  bnexp run -m [OVERRIDES...]              a Hydra multirun sweep, e.g. bnexp run -m norm=batch,none depth=3,10
  bnexp figures PATH... [--out DIR]        comparison figures from runs and sweeps
  bnexp reproduce NAME [--out DIR] [scale=quick|paper] [OVERRIDES...]
                                           a published finding: runs, figures, verdicts
  bnexp reproduce --list                   the findings bnexp knows
  bnexp completion bash                    a bash completion script for `bnexp run` keys and values:
                                           source <(bnexp completion bash)

`bnexp run --help` lists every config key and its default; `bnexp run --cfg job` prints the
resolved config. Hydra flags (-m, --cfg, --info, --multirun) go before the overrides.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "--version":
        print(f"bnexp {__version__}")
        return 0
    try:
        # Each command's module is imported only when it runs: `run` loads torch and Hydra,
        # `figures` must work without torch.
        if command == "run":
            from bnexp.run.command import run_command

            return run_command(rest)
        if command == "figures":
            from bnexp.analysis.sweep_figures import main as figures_main

            return figures_main(rest)
        if command == "reproduce":
            from bnexp.reproduce.cli import main as reproduce_main

            return reproduce_main(rest)
        if command == "completion":
            from bnexp.run.completion import completion_command

            return completion_command(rest)
    except UserError as error:
        print(f"bnexp: error: {error}", file=sys.stderr)
        return 2
    print(
        f"bnexp: error: unknown command {command!r}. Valid commands: run, figures, reproduce, "
        "completion "
        "(see `bnexp --help`).",
        file=sys.stderr,
    )
    return 2


def entry() -> None:
    sys.exit(main())
