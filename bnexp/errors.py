"""The one exception type that means "the user asked for something impossible".

`bnexp.cli` reports it as one paragraph and exit status 2, never a traceback. It lives in its own
torch-free module so that every package (run, analysis, reproduce) can raise it without importing
another's code.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for: reported as one paragraph, never a traceback."""


__all__ = ["UserError"]
