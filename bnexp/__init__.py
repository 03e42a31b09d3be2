"""bnexp: reproduce, measure and explain the published findings about Batch Normalization.

The Python API (bnexp/api.py), loaded on first use so that `import bnexp` stays cheap and never
imports torch: bnexp.load_run(path), bnexp.load_runs(*paths), bnexp.run([...], **overrides),
bnexp.steps_to_reach(curve, target), bnexp.Run, bnexp.RunTables, bnexp.UserError.
"""

import os

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


def __getattr__(name: str):
    import importlib

    if name == "run":
        # The subpackage bnexp.run is callable (bnexp/run/__init__.py): importing any of its
        # modules binds it to this name, so the function could not live here under that name.
        return importlib.import_module("bnexp.run")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bnexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
