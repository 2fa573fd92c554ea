"""flows/train.py end to end: the whole DAG on a tiny demo dataset, with a real Prefect
server and MLflow, then tagging with what it trained. The tag-audio flow's test
(flows/tag.py) is here too: it tags with the models the fixture trained."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from mlflow.tracking import MlflowClient

from audiotag.metrics import lwlrap
from audiotag.sources.demo import write_demo_dataset
from tests.helpers.artifacts import read_artifact
from tests.helpers.flows import (
    fold_task_states,
    prefect_records,
    registered_versions,
    served_model,
    strict_json,
    tag_with_cli,
)

pytestmark = pytest.mark.slow

PLANTED = "KGAT_planted0fake0token0value0123456789"

# A third stage that starts from the second, added by configuration alone: it also
# trains on the noisy clips the curated models agree with (on the tiny debug run, any
# clip with a prediction and a label in the vocabulary).
THIRD = {
    "stages.+": {
        "name": "plus",
        "subsets": ["curated"],
        "init": "curated",
        "noisy_selection": {"min_lwlrap": 0.0},
        "cycles": [{"epochs": 1, "lr": 1e-3}],
        "batch_size": 16,
    }
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, debug_preset: str) -> dict:
    """Two flow runs: the first with noisy fold 3 made to fail, then a re-run."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow
    from tasks.training import FAIL_ENV

    tmp = tmp_path_factory.mktemp("flow")
    source = write_demo_dataset(tmp / "src", seed=3, scale=0.12)
    workdir = tmp / "work"
    out: dict = {"source": source, "workdir": workdir}

    def run(overrides: dict | None = None):  # the flow run's final State
        return train_flow(
            source=str(source),
            workdir=str(workdir),
            preset=debug_preset,
            overrides=overrides,
            return_state=True,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp / "prefect-home"))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp / "prefect-results"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("PREFECT_API_URL", raising=False)
        # A Kaggle token in the environment must never reach logs, params or artifacts.
        mp.setenv("KAGGLE_API_TOKEN", PLANTED)
        mp.setenv("KAGGLE_USERNAME", "someone")
        mp.setenv("KAGGLE_KEY", PLANTED)
        with prefect_test_harness(server_startup_timeout=120):
            mp.setenv(FAIL_ENV, "noisy:3")
            out["failed"] = run()
            out["first"] = fold_task_states(out["failed"].state_details.flow_run_id)
            mp.delenv(FAIL_ENV)
            out["state"] = run()
            out["second"] = fold_task_states(out["state"].state_details.flow_run_id)
            out["summary"] = out["state"].result()
            out["versions"] = registered_versions(out["summary"]["mlflow_uri"])
            preds = list((workdir / "predictions").glob("*.npy"))
            out["predictions"] = {p: p.stat().st_mtime_ns for p in preds}
            # The same run again: every fold from the cache, nothing predicted again.
            out["again"] = run()
            out["third"] = fold_task_states(out["again"].state_details.flow_run_id)
            out["versions_again"] = registered_versions(out["summary"]["mlflow_uri"])
            # Noisy fold 2's weights deleted to free space, the curated stage longer and
            # more TTA passes (tracked elsewhere: the registry above stays as it is).
            shutil.rmtree(next(workdir.glob("models/noisy-*/fold-2")))
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/changed.db")
            out["changed"] = run({"curated.cycles": [{"epochs": 3, "lr": 3e-3}], "eval.tta": 2})
            out["fourth"] = fold_task_states(out["changed"].state_details.flow_run_id)
            # A third stage from configuration alone, then the same again from the cache.
            out["three"] = run(THIRD)
            out["fifth"] = fold_task_states(out["three"].state_details.flow_run_id)
            out["selection_artifact"] = read_artifact(
                out["three"].state_details.flow_run_id, "noisy-selection-plus"
            )
            out["three_again"] = run(THIRD)
            out["sixth"] = fold_task_states(out["three_again"].state_details.flow_run_id)
            out["prefect_text"] = prefect_records(
                [out[k].state_details.flow_run_id for k in ("failed", "state", "again", "changed")]
            )
    return out


def test_failed_fold_reruns_alone_and_flow_completes(trained: dict) -> None:
    failed, first, second = trained["failed"], trained["first"], trained["second"]
    assert failed.is_failed()
    assert "noisy-fold-3" in str(failed.message)
    assert first["noisy-fold-3"] == "Failed"
    assert {first[f"noisy-fold-{k}"] for k in (1, 2, 4, 5)} == {"Completed"}
    assert {first[f"curated-fold-{k}"] for k in (1, 2, 4, 5)} == {"Completed"}
    assert trained["state"].is_completed()
    for k in (1, 2, 4, 5):
        assert second[f"noisy-fold-{k}"] == "Cached"
        assert second[f"curated-fold-{k}"] == "Cached"
    assert second["noisy-fold-3"] == "Completed"
    assert second["curated-fold-3"] == "Completed"


def test_a_cached_rerun_predicts_and_registers_nothing_again(trained: dict) -> None:
    assert trained["again"].is_completed()
    assert trained["third"] == {n: "Cached" for n in trained["second"]}
    # The test predictions were read back, not written again.
    (path, mtime), *rest = trained["predictions"].items()
    assert not rest and path.stat().st_mtime_ns == mtime
    again = trained["again"].result()
    assert again["oof_lwlrap"] == trained["summary"]["oof_lwlrap"]
    assert (
        Path(again["submission"]).read_bytes()
        == Path(trained["summary"]["submission"]).read_bytes()
    )
    # The same models are not registered as another version.
    assert trained["versions_again"] == trained["versions"]
    assert "registered already: audiotag version 1 (alias 'champion')" in trained["prefect_text"]


def test_changing_a_later_stage_keeps_earlier_folds_and_lost_weights_are_retrained(
    trained: dict,
) -> None:
    fourth = trained["fourth"]
    assert trained["changed"].is_completed()
    # Noisy folds do not depend on the curated settings or on TTA: cached, except the one
    # whose weights were deleted, which trains again instead of pointing at a lost file.
    assert [fourth[f"noisy-fold-{k}"] for k in (1, 3, 4, 5)] == ["Cached"] * 4
    assert fourth["noisy-fold-2"] == "Completed"
    assert next(trained["workdir"].glob("models/noisy-*/fold-2/model.pt")).exists()
    assert {fourth[f"curated-fold-{k}"] for k in range(1, 6)} == {"Completed"}
    changed = trained["changed"].result()
    manifest = json.loads((Path(changed["model"]) / "audiotag-model.json").read_text())
    assert manifest["eval"]["tta"] == 2


def test_submission_follows_sample_submission(trained: dict) -> None:
    sub = pd.read_csv(trained["summary"]["submission"])
    with zipfile.ZipFile(trained["source"]) as zf, zf.open("sample_submission.csv") as f:
        sample = pd.read_csv(f)
    assert list(sub.columns) == list(sample.columns)
    assert list(sub.fname) == list(sample.fname)
    values = sub.iloc[:, 1:].to_numpy()
    assert values.min() >= 0 and values.max() <= 1


def test_mlflow_parent_and_nested_runs(trained: dict) -> None:
    summary, state = trained["summary"], trained["state"]
    client = MlflowClient(summary["mlflow_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert parent.data.tags["audiotag.dataset_fingerprint"]
    assert parent.data.metrics["oof/lwlrap"] == pytest.approx(summary["oof_lwlrap"])
    assert "test/lwlrap" in parent.data.metrics
    # One chart per stage shows every fold: one key, fold k at step k.
    for stage in summary["stages"]:
        history = client.get_metric_history(parent.info.run_id, f"fold_lwlrap/{stage}")
        by_fold = {m.step: m.value for m in history}
        assert by_fold == pytest.approx({r["fold"]: r[stage] for r in summary["folds"]})
    (data,) = parent.inputs.dataset_inputs
    assert data.dataset.digest == parent.data.tags["audiotag.dataset_fingerprint"]
    assert summary["mlflow_link"].endswith(
        f"/runs/{parent.info.run_id}?workflowType=machine_learning"
    )
    # Each label's calibrated threshold and the scores of its tags there, OOF and test.
    metrics = parent.data.metrics
    assert metrics["oof/micro_f1"] == pytest.approx(summary["oof_micro_f1"])
    assert metrics["test/micro_f1"] == pytest.approx(summary["test_micro_f1"])
    n_labels = len(pd.read_csv(summary["submission"], nrows=0).columns) - 1
    for prefix in ("threshold", "oof_precision", "oof_recall", "oof_f1", "test_f1"):
        assert sum(k.startswith(f"{prefix}/") for k in metrics) == n_labels
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    # This run trained noisy 3 and curated 3; the cached folds' runs belong to the first.
    assert sorted(r.info.run_name for r in children) == ["curated-fold-3", "noisy-fold-3"]
    for child in [parent, *children]:  # the runs table's Source, the commit on each
        assert child.data.tags["mlflow.source.name"] == "flows/train.py:train_flow"
        assert child.data.tags["mlflow.source.git.commit"]
    for child in children:
        assert client.get_metric_history(child.info.run_id, "valid/lwlrap")
        assert {"train/loss", "valid/loss"} <= set(child.data.metrics)
        assert any(a.path == "model" for a in client.list_artifacts(child.info.run_id))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"submission.csv", "scores.json", "oof.parquet", "data_report", "model"} <= artifacts


def test_tagging_the_test_set_reproduces_the_flows_test_score(
    trained: dict, tmp_path: Path
) -> None:
    summary = trained["summary"]
    data = trained["workdir"] / "data"
    rows = tag_with_cli([data / "test"], summary["model"], tmp_path / "tags.jsonl")
    labels = pd.read_csv(data / "test_labels.csv")
    vocab = list(pd.read_csv(data / "sample_submission.csv", nrows=0).columns[1:])
    by_name = {Path(r["path"]).name: r for r in rows if r["error"] is None}
    truth, scores = [], []
    for fname, text in zip(labels.fname, labels.labels, strict=True):
        if fname not in by_name:
            continue
        probs = {t["label"]: t["probability"] for t in by_name[fname]["tags"]}
        scores.append([probs[v] for v in vocab])
        truth.append([v in text.split(",") for v in vocab])
    assert lwlrap(np.array(truth), np.array(scores)) == pytest.approx(
        summary["test_lwlrap"], abs=1e-4
    )


def test_every_format_rate_and_channel_count_gets_the_same_top_label(
    trained: dict, tmp_path: Path
) -> None:
    summary = trained["summary"]
    sub = pd.read_csv(summary["submission"])
    probs = np.sort(sub.iloc[:, 1:].to_numpy(), axis=1)
    clip = sub.fname[int(np.argmax(probs[:, -1] - probs[:, -2]))]  # the clearest test clip
    y, sr = sf.read(trained["workdir"] / "data" / "test" / clip, dtype="float32")
    variants = []
    for rate in (16000, 22050, 44100, 48000):
        z = AF.resample(torch.from_numpy(y), sr, rate).numpy() if rate != sr else y
        for channels in (1, 2):
            data = np.stack([z, z], axis=1) if channels == 2 else z
            for ext, subtype in (
                ("wav", "PCM_U8"),
                ("wav", "PCM_16"),
                ("wav", "PCM_24"),
                ("wav", "FLOAT"),
                ("flac", "PCM_16"),
                ("ogg", "VORBIS"),
            ):
                path = tmp_path / f"{rate}-{channels}ch-{subtype}.{ext}"
                sf.write(path, data, rate, subtype=subtype)
                variants.append(path)
    rows = tag_with_cli(variants, summary["model"], tmp_path / "v.jsonl")
    assert [r["error"] for r in rows] == [None] * len(variants)
    tops = {Path(r["path"]).name: r["tags"][0]["label"] for r in rows}
    assert len(set(tops.values())) == 1, tops


def test_an_unreadable_file_gets_an_error_row_and_the_rest_go_on(
    trained: dict, tmp_path: Path
) -> None:
    good = next((trained["workdir"] / "data" / "test").glob("*.wav"))
    bad = tmp_path / "bad file é.wav"
    bad.write_bytes(b"RIFF....not a wav at all")
    rows = tag_with_cli([bad, good], trained["summary"]["model"], tmp_path / "t.jsonl", status=1)
    assert rows[0]["error"] and "unreadable" in rows[0]["error"] and not rows[0]["tags"]
    assert rows[1]["error"] is None and len(rows[1]["tags"]) > 1


def test_tagging_with_the_registered_champion(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["summary"]["mlflow_uri"])
    good = sorted((trained["workdir"] / "data" / "test").glob("*.wav"))[:2]
    by_package = tag_with_cli(good, trained["summary"]["model"], tmp_path / "a.jsonl")
    by_registry = tag_with_cli(good, "models:/audiotag@champion", tmp_path / "b.jsonl")
    assert by_registry == by_package


def test_registered_champion_is_served_over_http(trained: dict) -> None:
    import base64
    import urllib.request

    summary = trained["summary"]
    client = MlflowClient(summary["mlflow_uri"])
    champ = client.get_model_version_by_alias("audiotag", "champion")
    assert float(champ.tags["oof_lwlrap"]) == pytest.approx(summary["oof_lwlrap"], abs=1e-5)
    with served_model(summary["mlflow_uri"], "models:/audiotag@champion") as base:
        clips = sorted((trained["workdir"] / "data" / "test").glob("*.wav"))[:2]
        records = [{"audio": base64.b64encode(c.read_bytes()).decode()} for c in clips]
        req = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        reply = strict_json(urllib.request.urlopen(req, timeout=60).read())
    rows = reply["predictions"]
    assert len(rows) == 2
    # The package's thresholds, calibrated on the run's out-of-fold predictions.
    manifest = json.loads((Path(summary["model"]) / "audiotag-model.json").read_text())
    cut = manifest["thresholds"]["by_label"]
    for row in rows:
        assert row["error"] == "" and row["path"] is None and row["best"]["label"] in cut
        chosen = {t["label"] for t in row["tags"]}
        assert chosen == {label for label, t in cut.items() if row[label] >= t}


def test_tag_audio_flow_writes_tags_beside_the_folder(trained: dict, tmp_path: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.tag import tag_audio_flow

    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    for i, clip in enumerate(sorted((trained["workdir"] / "data" / "test").glob("*.wav"))[:3]):
        shutil.copy(clip, inbox / ("sub" if i else "") / clip.name)
    (inbox / "broken.wav").write_bytes(b"")
    with prefect_test_harness(server_startup_timeout=120):
        out = Path(tag_audio_flow(folder=str(inbox), model=str(trained["workdir"])))
    rows = pd.read_csv(out, keep_default_na=False)
    assert out.parent == inbox and len(rows) == 4
    assert rows.set_index("path").loc["broken.wav", "error"]
    # Each label at or above its own calibrated threshold, as `audiotag tag` gives.
    from audiotag.inference.tagging import Ensemble, resolve_package

    by_label = Ensemble(resolve_package(trained["workdir"])).thresholds.by_label
    for cell in rows[rows.path != "broken.wav"].tags:
        for tag in filter(None, cell.split(";")):
            label, p = tag.rsplit(":", 1)
            assert float(p) >= by_label[label] - 1e-4


def test_no_secret_in_logs_params_or_artifacts(trained: dict) -> None:
    assert trained["prefect_text"]  # the logs were read
    assert PLANTED not in trained["prefect_text"]
    for path in trained["workdir"].rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert PLANTED.encode() not in path.read_bytes(), path
    client = MlflowClient(trained["summary"]["mlflow_uri"])
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            text = json.dumps([run.data.params, run.data.tags])
            assert PLANTED not in text and "KAGGLE" not in text


def test_a_third_stage_from_config_alone_trains_caches_and_makes_the_ensemble(
    trained: dict,
) -> None:
    three, fifth, sixth = trained["three"], trained["fifth"], trained["sixth"]
    assert three.is_completed(), three.message
    for k in range(1, 6):
        # The first two stages' settings are unchanged: their folds come from the cache
        # (curated fold 2 trains again when its retrained noisy weights differ in bytes).
        assert fifth[f"noisy-fold-{k}"] == "Cached"
        if k != 2:
            assert fifth[f"curated-fold-{k}"] == "Cached"
        assert fifth[f"plus-fold-{k}"] == "Completed"
        assert sixth[f"plus-fold-{k}"] == "Cached"
    # The third stage's noisy selection: a file of every noisy clip, some of them kept,
    # published as a table, kept clips first.
    (selection,) = trained["workdir"].glob("models/selection-*.parquet")
    rows = pd.read_parquet(selection)
    assert rows.kept.any() and set(rows.reason) <= {"agrees", "no_label_in_vocabulary"}
    table = json.loads(trained["selection_artifact"].data)
    assert table and table[0]["kept"] and len(table) == min(len(rows), 200)
    summary = three.result()
    client = MlflowClient(summary["mlflow_uri"])
    plus_runs = client.search_runs(
        [client.get_run(summary["mlflow_run_id"]).info.experiment_id],
        filter_string="attributes.run_name LIKE 'plus-fold-%'",
    )
    assert len(plus_runs) == 5
    assert {r.data.params["noisy_selection_file"] for r in plus_runs} == {selection.name}
    assert summary["stages"] == ["noisy", "curated", "plus"]
    assert [set(f) for f in summary["folds"]] == [
        {"fold", "noisy", "curated", "plus", "baseline"}
    ] * 5
    scores = json.loads(Path(summary["scores"]).read_text())
    assert sorted(scores["folds"]) == [f"plus/{k}" for k in range(1, 6)]
    assert scores["oof_lwlrap"] == pytest.approx(summary["oof_lwlrap"])
    # The ensemble is the third stage's fold models.
    manifest = json.loads((Path(summary["model"]) / "audiotag-model.json").read_text())
    models = [torch.load(Path(summary["model"]) / m, weights_only=True) for m in manifest["models"]]
    assert {m["stage"] for m in models} == {"plus"}
    assert sixth and trained["three_again"].result()["oof_lwlrap"] == summary["oof_lwlrap"]
