"""A claim's discussion describes the runs it was written for: keyed by scale, or by scale and
the command line's overrides; a discussion of the default runs never shows under others."""

from __future__ import annotations

from bnexp.reproduce.report import _discussion

SPEC = {
    "discussion": {
        "quick": "on the bundled MNIST subset",
        "quick data=fashion_mnist": "on Fashion-MNIST",
    }
}


def test_the_scale_key_describes_runs_without_overrides():
    assert _discussion(SPEC, "quick") == "on the bundled MNIST subset"
    assert _discussion(SPEC, "quick", []) == "on the bundled MNIST subset"


def test_runs_with_overrides_get_their_own_discussion_or_none():
    assert _discussion(SPEC, "quick", ["data=fashion_mnist"]) == "on Fashion-MNIST"
    assert _discussion(SPEC, "quick", ["data=cifar10"]) is None
    assert _discussion(SPEC, "paper", ["data=fashion_mnist"]) is None


def test_a_plain_string_discussion_applies_to_every_run():
    assert _discussion({"discussion": "always"}, "paper", ["data=fashion_mnist"]) == "always"
