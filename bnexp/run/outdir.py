"""Run and sweep-job directory names (slug). Making a directory, and the user error when it
cannot be made, is bnexp.outdir's (shared with `bnexp figures` and `bnexp reproduce`)."""

from __future__ import annotations

import hashlib
import re


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
