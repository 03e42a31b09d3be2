"""What every in-process procedure returns, and its shared data cache: a module of its own so
that procedures living in their own modules (explosion, generalization) and the registry in
procedures.py import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bnexp.run.config import Config
from bnexp.run.data import InMemoryData, load_data


@dataclass
class ProcedureResult:
    tables: dict[str, pd.DataFrame]
    data_source: str
    train_size: int
    test_size: int
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of_data(
        cls, tables: dict[str, pd.DataFrame], data: InMemoryData | None, notes: list[str]
    ) -> ProcedureResult:
        """The result of a procedure that trained on `data` (None: no config loaded any)."""
        if data is None:
            return cls(tables, "none", 0, 0, notes)
        return cls(tables, data.source, len(data.y_train), len(data.y_test), notes)


def _load(cfg: Config, cache: dict) -> InMemoryData:
    key = (
        cfg.data.name.value,
        cfg.data.root,
        cfg.data.source.value,
        cfg.data.download,
        cfg.data.binarize,
    )
    if key not in cache:
        cache[key] = load_data(*key)
    return cache[key]
