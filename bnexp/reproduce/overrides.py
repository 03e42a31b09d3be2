"""A finding's overrides: its scale's (quick or paper) merged with the user's, expanded into
the configs of its runs and checked before anything trains.

    merge_overrides(base, scale, user)   later groups replace earlier overrides of a key
    expand_overrides(overrides)          every combination of the sweep overrides
    compose_config(experiment, combo)    the validated run config (a UserError if it is not)
"""

from __future__ import annotations

import itertools

from bnexp.errors import UserError
from bnexp.run.config import Config, register_configs, validate

# Added before the scale's overrides (a user's own override wins): the finding draws its own
# figures, so the runs skip their per-run plots (seconds each).
BASE_OVERRIDES = ["plots=false"]


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups: list[str]) -> list[str]:
    """Later groups replace earlier overrides of the same key (Hydra rejects duplicates)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            merged[override_key(override)] = override
    return list(merged.values())


def expand_overrides(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweep overrides (`seed=0,1`, `x=range(3)`), as plain overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:  # Hydra's OverrideParseException and friends
        raise UserError(f"cannot parse the overrides {' '.join(overrides)}: {error}") from None
    choices = []
    for override, text in zip(parsed, overrides, strict=True):
        key = text.split("=", 1)[0]
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(combo) for combo in itertools.product(*choices)] or [[]]


def compose_config(experiment: str, overrides: list[str]) -> Config:
    """The validated run config of `experiment` with `overrides` (no sweep syntax)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_configs()  # the schema and the resolver configs/ needs; idempotent
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
        config = OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as error:
        message = str(error).strip().replace("\n", " ")
        raise UserError(
            f"the overrides {' '.join(overrides) or '(none)'} do not fit experiment={experiment}: {message}"
        ) from None
    finally:
        GlobalHydra.instance().clear()
    validate(config)
    return config
