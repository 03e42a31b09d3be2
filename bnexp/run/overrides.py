"""Checks a `bnexp run` command line before Hydra sees it, so that a mistake gets one clear
paragraph (key, bad value, valid choices) instead of Hydra's composition report.

Every value of every override is composed on its own against the real config, so a bad value
inside a sweep (`depth=3,abc`) is rejected before any job starts. Combinations of values
(`norm=batch batch_size=1`) are checked by each job (config.validate), because in a sweep
one impossible combination must not stop the others.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
from dataclasses import fields, is_dataclass

from bnexp.errors import UserError
from bnexp.run.config import Config, register_configs

GROUPS = ("data", "model", "norm", "optim", "logger", "experiment")


def group_choices(group: str) -> list[str]:
    folder = importlib.resources.files("bnexp.configs") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def schema_keys(node=Config, prefix: str = "") -> dict[str, type]:
    """Every dotted key of the schema with its declared type."""
    keys = {}
    for f in fields(node):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            keys.update(schema_keys(type(default), prefix + f.name + "."))
        else:
            keys[prefix + f.name] = f.type
    return keys


def describe_type(type_name: str) -> str:
    text = str(type_name)
    if "int" in text:
        return "an integer"
    if "float" in text:
        return "a number"
    if "bool" in text:
        return "true or false"
    return f"of type {text}"


def split_command_line(args: list[str]) -> tuple[list[str], list[str]]:
    """(flags, overrides). Raises UserError when a flag follows an override (Hydra 1.3 needs
    all flags first)."""
    from hydra._internal.utils import get_args_parser

    parsed, extra = get_args_parser().parse_known_args(args)
    if extra:
        flags = [a for a in args if a.startswith("-")]
        raise UserError(
            f"the flag(s) {' '.join(flags)} must come before the overrides (left unread: "
            f"{' '.join(extra)}). Hydra 1.3 reads flags first, e.g. "
            "`bnexp run -m norm=batch,none depth=3,10`."
        )
    flags = [a for a in args if a not in parsed.overrides]
    return flags, list(parsed.overrides)


def explain(key: str, value: str, error: Exception) -> str:
    """One paragraph for a rejected override, from Hydra's or OmegaConf's exception."""
    text = str(error)
    cause = error.__cause__
    cause_text = str(cause) if cause is not None else ""
    if key in GROUPS or "Could not find" in text:
        choices = ", ".join(group_choices(key)) if key in GROUPS else "?"
        return f"{key}={value} is not valid. Valid choices for {key}: {choices}."
    match = re.search(r"expected one of \[([^\]]*)\]", cause_text or text)
    if match:
        return f"{key}={value} is not valid. Valid choices for {key}: {match.group(1)}."
    if "could not be converted" in (cause_text or text) or "Value '" in (cause_text or text):
        declared = schema_keys().get(key, "")
        return f"{key}={value} is not valid: {key} must be {describe_type(declared)}."
    if (
        "not in" in (cause_text or text)
        or "Could not override" in text
        or "Key '" in (cause_text or text)
    ):
        return unknown_key_message(key)
    return f"{key}={value} is not valid: {(cause_text or text).splitlines()[0]}"


def unknown_key_message(key: str) -> str:
    known = sorted(schema_keys()) + list(GROUPS)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"{key} is not a bnexp config key.{hint} Valid keys: {', '.join(known)}."


def is_config_group(key: str) -> bool:
    """True for a config group path such as `experiment/batch_size_scaling`."""
    return (importlib.resources.files("bnexp.configs") / key).is_dir()


def check_single_run(parsed: list) -> None:
    """Raises UserError for the first sweep override (`norm=batch,none`, `seed=range(3)`) in
    a command line that runs one configuration."""
    for override in parsed:
        if override.is_sweep_override():
            line, key = override.input_line, override.key_or_group
            value = line.split("=", 1)[1]
            raise UserError(
                f"{line} is not allowed without -m: {value} gives {key} several values (a "
                f"sweep), but `bnexp run` without -m runs one configuration. Give {key} one "
                f"value, or use `bnexp run -m ...` to sweep a comma list (flags first: `bnexp "
                f"run -m {line} ...`)."
            )


def check_overrides(overrides: list[str], multirun: bool = True) -> None:
    """Raises UserError for the first override value that does not compose, or (multirun
    false: `bnexp run` without -m) for the first sweep, which Hydra would only call ambiguous."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise UserError(f"cannot read the overrides: {str(error).splitlines()[0]}") from None
    if not multirun:
        check_single_run(parsed)

    # An experiment's own config groups (e.g. +experiment/batch_size_scaling=q2) only compose
    # together with the experiment: check every value in its context.
    context = [
        o.input_line for o in parsed if o.key_or_group == "experiment" and not o.is_sweep_override()
    ]
    checks: list[tuple[str, str, str]] = []
    for override in parsed:
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue  # Hydra's own settings: Hydra checks them
        prefix = ""
        if override.is_add() or override.is_force_add():
            if not is_config_group(key):  # appending a config group is fine; a new key is not
                raise UserError(
                    f"{override.input_line} adds a key, but bnexp has a fixed set of keys: "
                    f"{unknown_key_message(key)}"
                )
            prefix = "+" if override.is_add() else "++"
        if override.is_delete():
            raise UserError(f"{override.input_line}: deleting a key is not supported by bnexp.")
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
        checks += [(prefix, key, value) for value in values]

    if not checks:
        return
    was_initialized = GlobalHydra.instance().is_initialized()
    if was_initialized:
        return  # inside another Hydra app (tests): leave the checking to it
    register_configs()
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        for prefix, key, value in checks:
            try:
                extra = context if key != "experiment" else []
                cfg = compose("config", overrides=[*extra, f"{prefix}{key}={value}"])
                OmegaConf.to_object(cfg)
            except (HydraException, OmegaConfBaseException, ValueError) as error:
                raise UserError(explain(key, value, error)) from None
