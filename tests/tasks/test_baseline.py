"""tasks/baseline.py: what the baseline's cache key depends on, and what it leaves out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audiotag.config import load_config
from audiotag.steps.dataset import DatasetInfo
from tasks.baseline import baseline_cache_key

INFO = DatasetInfo("/data", "fingerprint-0", ("Bark", "Run"), 40, 2, (("curated", 40),))
# A last stage scored on the noisy clips' held-out folds instead of the curated ones.
NOISY_LAST = {
    "name": "extra",
    "subsets": ["noisy"],
    "init": "curated",
    "cycles": [{"epochs": 1, "lr": 1e-3}],
}


def _key(tmp_path: Path, overrides: dict[str, Any] | None = None, **changes: Any) -> str:
    parameters = {
        "workdir": str(tmp_path / "work"),
        "info": INFO,
        "store_dir": str(tmp_path / "work" / "features" / "abc"),
        "config": load_config("debug", overrides),
        **changes,
    }
    return baseline_cache_key(None, parameters)  # type: ignore[arg-type] - no run context


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"curated.cycles": [{"epochs": 3, "lr": 1e-3}]}, id="stage-cycles"),
        pytest.param({"noisy.batch_size": 8}, id="stage-batch-size"),
        pytest.param({"model.widen": 1.0}, id="model-widen"),
        pytest.param({"eval.tta": 4}, id="tta"),
    ],
)
def test_the_network_settings_leave_the_baseline_cached(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    # The baseline fits log-mel statistics: a longer or wider network changes nothing of it.
    assert _key(tmp_path, overrides) == _key(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "changes"),
    [
        pytest.param({"folds.n_folds": 3}, {}, id="n-folds"),
        pytest.param({"folds.seed": 7}, {}, id="folds-seed"),
        pytest.param({"seed": 1}, {}, id="seed"),
        pytest.param({"stages.+": NOISY_LAST}, {}, id="scored-subset"),
        pytest.param(
            None, {"info": DatasetInfo("/data", "fingerprint-1", INFO.vocab, 40, 2)}, id="data"
        ),
        pytest.param(
            None, {"info": DatasetInfo("/data", "fingerprint-0", ("Bark",), 40, 2)}, id="vocab"
        ),
        pytest.param(None, {"store_dir": "/elsewhere/features/abc"}, id="store-dir"),
        pytest.param(None, {"workdir": "/elsewhere"}, id="workdir"),
    ],
)
def test_the_baseline_is_fitted_again_when_its_folds_seed_data_or_store_change(
    tmp_path: Path, overrides: dict[str, Any] | None, changes: dict[str, Any]
) -> None:
    assert _key(tmp_path, overrides, **changes) != _key(tmp_path)
