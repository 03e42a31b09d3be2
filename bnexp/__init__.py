"""bnexp: reproduce, measure and explain the published findings about Batch Normalization.

The Python API (bnexp/api.py), loaded on first use so that `import bnexp` stays cheap and never
imports torch: bnexp.load_run(path), bnexp.load_runs(*paths), bnexp.run([...], **overrides),
bnexp.steps_to_reach(curve, target), bnexp.Run, bnexp.RunTables, bnexp.UserError.
"""

import os
import sys
import types
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting turn a shared or oversubscribed machine (parallel sweep
# jobs, a busy laptop) into a 10-100x slowdown for the small kernels of these models: measured
# here, 20 steps of a tiny MLP took 15 s instead of 0.1 s with 2 threads on 2 busy cores.
# Sleeping waiters cost little when the machine is idle. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access (PEP 562).
_LAZY = {
    "load_run": "bnexp.api",
    "load_runs": "bnexp.api",
    "steps_to_reach": "bnexp.api",
    "Run": "bnexp.api",
    "RunTables": "bnexp.api",
    "UserError": "bnexp.errors",
}
__all__ = ["__version__", "run", *_LAZY]


class _RunPackage(types.ModuleType):
    """The subpackage bnexp.run (one training run), also callable: bnexp.run([...]) is
    bnexp.api.run. Python binds the name bnexp.run to the subpackage as soon as any of its
    modules is imported, so a function of that name could not stay; the package is made
    callable instead (by _Bnexp below, so that bnexp.run itself never imports bnexp.api)."""

    def __call__(
        self,
        overrides: list[str] | str | None = None,
        /,
        *,
        out: str | Path | None = None,
        **overrides_kw: Any,
    ) -> Any:
        """bnexp.api.run: one configuration, as `bnexp run` runs it; returns the loaded Run."""
        import importlib

        return importlib.import_module("bnexp.api").run(overrides, out=out, **overrides_kw)


class _Bnexp(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds a loaded subpackage with setattr(bnexp, "run", module).
        if name == "run" and type(value) is types.ModuleType:
            value.__class__ = _RunPackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Bnexp


def __getattr__(name: str):
    import importlib

    if name == "run":  # imported here on first use; binding it makes it callable (_Bnexp)
        return importlib.import_module("bnexp.run")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bnexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
