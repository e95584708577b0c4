"""``benchmarks/accuracy.py``: the other file's rows train each fold as fit-only rows
(``paidan train --fit-only``), or, with ``--no-fit-only``, as the fold's own rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.benchmarks.scripts import load_benchmark
from tests.conftest import TINY_TICKETS


class Fitted(Exception):
    """Raised by the stand-in fit_router once it has seen its arguments."""


@pytest.mark.parametrize("fit_only", [True, False])
def test_the_other_files_rows_are_fit_only_unless_asked(
    fit_only: bool, tiny_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    accuracy = load_benchmark("accuracy")
    own = pd.DataFrame(TINY_TICKETS, columns=["title", "text", "department", "category"])
    own["id"] = [f"T{i}" for i in range(len(own))]
    other = pd.DataFrame(
        [
            ("夜市噪音", "夜市摊贩音响太吵，凌晨一点还在放歌", "", "环境"),
            ("车库漏水", "地下车库长期漏水，物业说要找开发商", "", "城建"),
        ],
        columns=["title", "text", "department", "category"],
    )
    other["id"] = ["B1", "B2"]
    seen: dict[str, Any] = {}

    def fit_router(train_df: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        seen["train"], seen["fit_only"] = train_df, kwargs.get("fit_only")
        raise Fitted

    monkeypatch.setattr(accuracy, "fit_router", fit_router)
    train = np.arange(len(own))
    with pytest.raises(Fitted):
        accuracy.run_product(
            own, "category", train, train, tiny_config, [], other, fit_only=fit_only
        )
    if fit_only:
        assert list(seen["train"]["id"]) == list(own["id"])
        assert list(seen["fit_only"]["id"]) == ["B1", "B2"]
    else:
        assert list(seen["train"]["id"]) == [*own["id"], "B1", "B2"]
        assert seen["fit_only"] is None
