"""One training run: the config, the models and norms, the data, the training loop, the per-layer
statistics and the files a run writes. Uses torch; never imports bnexp.analysis or
bnexp.reproduce. Importing this package imports nothing: take the module you need.

The package is also callable: `bnexp.run(["norm=batch"], steps=500)` is bnexp.api.run (one
configuration, as `bnexp run` runs it). Python binds `bnexp.run` to this package as soon as
any bnexp.run module is imported, so the function is this package's __call__.
"""

import sys
import types
from pathlib import Path
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(
        self,
        overrides: list[str] | str | None = None,
        /,
        *,
        out: str | Path | None = None,
        **overrides_kw: Any,
    ) -> Any:
        """bnexp.api.run: one configuration, as `bnexp run` runs it; returns the loaded run."""
        from bnexp.api import run

        return run(overrides, out=out, **overrides_kw)


sys.modules[__name__].__class__ = _CallablePackage
