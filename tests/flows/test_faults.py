"""Faults around the flow: a tracking server that is down, and the checks of the flow's
first step for runs started from the UI (the CLI makes them before the flow starts)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.layouts import curated_clips, write_csv, write_layout


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for the module's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.delenv("PREFECT_API_URL", raising=False)
        with prefect_test_harness(server_startup_timeout=120):
            yield


def test_a_tracking_server_that_is_down_fails_the_run_fast_with_that_cause(
    harness: None, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.train import train_flow

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    state = train_flow(
        source=str(isolated_env / "nowhere"), workdir=str(isolated_env / "w"), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(Exception, match=rf"127.0.0.1:{port} is not reachable"):
        state.result()
    assert not (isolated_env / "w" / "data").exists()  # no work was started


def test_a_flow_started_from_the_ui_checks_the_csvs_before_reading_audio(
    harness: None, isolated_env: Path
) -> None:
    from audiotag.data.layout import LayoutError
    from flows.train import train_flow

    data = write_layout(
        isolated_env / "data", ("Bark", "Meow"), {"curated": curated_clips(4, ("Bark", "Meow"))}
    )
    write_csv(data / "train_curated.csv", ["fname", "label"], [["c000.wav", "Bark"]])
    work = isolated_env / "w"
    state = train_flow(source=str(data), workdir=str(work), preset="debug", return_state=True)
    assert state.is_failed()
    with pytest.raises(LayoutError, match="train_curated.csv: no 'labels' column"):
        state.result()
    assert not (work / "metadata.parquet").exists() and not (work / "mlflow.db").exists()


@pytest.mark.slow
def test_a_small_dataset_trains_to_the_end_and_an_unscorable_test_set_keeps_the_outputs(
    harness: None, isolated_env: Path
) -> None:
    """25 curated clips, no noisy set, 2 folds, a step floor that draws more batches than
    a fold has clips: it trains. Every test label is outside the vocabulary: the run
    still writes the submission, the package and the scores it can, and says what it
    could not score. Two curated clips only have labels outside the vocabulary (warned),
    and one label would run as a spreadsheet formula (escaped in CSV outputs)."""
    import json

    from flows.train import train_flow

    vocab = ("Bark", "Meow", '=HYPERLINK("http://evil")')
    curated = curated_clips(25, vocab)
    curated.update({"c023.wav": "Moo", "c024.wav": "Moo,Oink"})
    test = {f"t{i}.wav": "Quack" for i in range(4)}
    data = write_layout(isolated_env / "data", vocab, {"curated": curated, "test": test})
    overrides = {"folds.n_folds": 2, "curated.min_steps": 20}
    work = isolated_env / "w"
    summary = train_flow(source=str(data), workdir=str(work), preset="debug", overrides=overrides)

    assert summary["oof_lwlrap"] is not None and summary["test_lwlrap"] is None
    assert summary["not_scored"] == [
        "test lwlrap: not scored, none of its 4 labelled clips has a label in the vocabulary"
    ]
    scores = json.loads(Path(summary["scores"]).read_text())
    assert scores["not_scored"] == summary["not_scored"] and len(scores["folds"]) == 2
    from audiotag.inference.tagging import Ensemble

    package = Ensemble(Path(summary["model"]))
    assert len(package.models) == 2 and package.vocab == vocab
    header = Path(summary["submission"]).read_text().splitlines()[0]
    assert header == 'fname,Bark,Meow,"\'=HYPERLINK(""http://evil"")"'
    report = (work / "report" / "data_report.md").read_text()
    assert "2 curated clips have no label in the vocabulary" in report
    assert "c023.wav, c024.wav" in report
    per_class = Path(summary["scores"]).with_name("per_class.csv").read_text()
    assert "'=HYPERLINK" in per_class
