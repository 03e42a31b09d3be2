"""Output directories: their names (slug) and their making. A directory is made up front, so
that one that cannot be made is a user error naming the key and the path (exit 2), never a
traceback from deep inside Hydra or a plot."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from bnexp.errors import UserError


def slug(override_dirname: str) -> str:
    """A directory-name-safe form of a run's overrides ("base" when there are none): the Hydra
    resolver `bnexp_slug` that configs/config.yaml uses for run and sweep-job directories.

    Names longer than 120 characters are cut and end with a hash of the whole, so two jobs
    whose overrides differ only at the end never share a directory.
    """
    text = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname)
    if len(text) > 120:
        digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:10]
        text = f"{text[:108]}_{digest}"
    return text or "base"


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
