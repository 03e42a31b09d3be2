"""Output directories, made up front: one that cannot be made is a user error naming the key and
the path (exit 2), never a traceback from deep inside Hydra or a plot. Torch-free and shared:
`bnexp run` (hydra.run.dir, hydra.sweep.dir), `bnexp figures --out`, `bnexp reproduce --out`."""

from __future__ import annotations

import os
from pathlib import Path

from bnexp.errors import UserError


def make_output_dir(key: str, path: str | Path) -> Path:
    """Creates `path` (and its parents) and checks it can be written; raises UserError naming
    `key` (e.g. `hydra.run.dir`, `--out`) otherwise."""
    text = str(path)
    try:
        if not text.strip():
            raise OSError("the path is empty")
        Path(text).mkdir(parents=True, exist_ok=True)
        if not os.access(text, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        reason = error.strerror or str(error)
        example = "results/mine" if key.startswith("hydra.") else "figures/mine"
        raise UserError(
            f"{key}={text}: the output directory cannot be created or written ({reason}). "
            f"Choose a directory you can write to, e.g. {key}={example} (relative to the "
            "current directory)."
        ) from None
    return Path(text)
