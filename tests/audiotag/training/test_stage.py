"""Training: resume from checkpoints, whole-clip deterministic evaluation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from audiotag.config import EvalSettings, load_config
from audiotag.features.store import PAD_DB
from audiotag.inference.predict import LoadedModel
from audiotag.training.batches import Clips
from audiotag.training.checkpoints import latest_checkpoint
from tests.helpers.training import N_MELS, synthetic_store, tiny_config
from tests.helpers.training import train_one as run


def _weights(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    config = tiny_config()
    data, clips = synthetic_store()
    straight = run(tmp_path / "a", config, data, clips)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", config, data, clips, stop_at=3)  # inside the second cycle
    assert latest_checkpoint(tmp_path / "b" / "checkpoints")[0] == 3
    # Old checkpoints are pruned as training goes.
    assert len(list((tmp_path / "b" / "checkpoints").glob("*.pt"))) == 1
    seen: list[int] = []
    resumed = run(tmp_path / "b", config, data, clips, epochs_seen=seen)
    assert seen == [4] and resumed.resumed_from_epoch == 3
    assert len(straight.lrs) == 4 * 4
    assert straight.lrs == resumed.lrs  # the learning rate at every step
    wa, wb = _weights(straight.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lr_schedule_is_flat_then_cosine_per_cycle(tmp_path: Path) -> None:
    config = tiny_config()
    data, clips = synthetic_store()
    lrs = list(run(tmp_path, config, data, clips).lrs)
    per_cycle = len(lrs) // 2
    first, second = lrs[:per_cycle], lrs[per_cycle:]
    assert first[0] == pytest.approx(3e-3) and second[0] == pytest.approx(1e-3)
    for cycle, lr in ((first, 3e-3), (second, 1e-3)):
        flat = int(0.75 * len(cycle))
        assert cycle[:flat] == pytest.approx([lr] * flat)  # flat ...
        tail = cycle[flat:]
        assert all(a > b for a, b in zip(tail, tail[1:], strict=False))  # ... then cosine down
        assert tail[-1] < lr


def test_model_file_predicts_alone_deterministically_over_the_whole_clip(tmp_path: Path) -> None:
    config = tiny_config(**{"noisy.cycles": [{"epochs": 6, "lr": 3e-3}]})
    data, clips = synthetic_store(n=48)
    result = run(tmp_path, config, data, clips)
    assert result.valid_lwlrap > 0.9
    model = LoadedModel(Path(result.model_path))
    assert model.vocab == ("low", "high")
    # A long clip, silent but for a 'high' sound at its very end.
    long = np.full((400, N_MELS), PAD_DB + 20, dtype=np.float32)
    long += np.random.default_rng(1).normal(0, 3, long.shape).astype(np.float32)
    long[-25:, 22:28] += 60
    store = np.concatenate([data, long])
    clip = Clips(np.array([len(data)]), np.array([400]), np.array([[0, 1]], dtype=np.float32))
    a = model.predict(store, clip, EvalSettings(tta=0))
    b = model.predict(store, clip, EvalSettings(tta=0))
    assert np.array_equal(a, b)
    assert a[0, 1] > 0.5 and a[0, 1] > a[0, 0]


def test_small_data_gets_enough_steps_in_the_same_epochs(tmp_path: Path) -> None:
    overrides = {"curated.min_steps": 120, "curated.scratch_min_steps": 400}
    stage = load_config("demo", overrides).stage("curated")
    big = 100 * stage.batch_size * stage.scratch_min_steps
    assert stage.batches_per_epoch(big, from_scratch=True) == big // stage.batch_size
    # 40 clips: a few batches a pass; more steps from scratch than from earlier weights.
    assert stage.batches_per_epoch(40, False) * stage.epochs >= stage.min_steps
    assert stage.batches_per_epoch(40, True) * stage.epochs >= stage.scratch_min_steps
    assert stage.scratch_min_steps > stage.min_steps
    config = tiny_config(**{"noisy.min_steps": 40, "noisy.batch_size": 8})
    data, clips = synthetic_store(n=48)
    result = run(tmp_path, config, data, clips)  # 32 training clips: 4 batches of 8
    epochs = config.stage("noisy").epochs
    assert len(result.history) == epochs  # validated and checkpointed per epoch as set
    assert len(result.lrs) >= 40 and len(result.lrs) == epochs * (len(result.lrs) // epochs)


def test_validation_every_few_epochs_and_after_the_last(tmp_path: Path) -> None:
    config = tiny_config(**{"noisy.valid_every": 3})  # 4 epochs: scored after 3 and 4
    data, clips = synthetic_store()
    result = run(tmp_path, config, data, clips)
    scored = [not np.isnan(h["valid_lwlrap"]) for h in result.history]
    assert scored == [False, False, True, True]
    assert result.valid_lwlrap == result.history[-1]["valid_lwlrap"]
    assert load_config("reference").stage("noisy").valid_every > 1  # the costly whole-clip pass


def test_tta_of_a_clip_does_not_depend_on_its_batch_company(tmp_path: Path) -> None:
    config = tiny_config(**{"noisy.cycles": [{"epochs": 1, "lr": 3e-3}], "eval.tta": 2})
    data, clips = synthetic_store()
    model = LoadedModel(Path(run(tmp_path, config, data, clips).model_path))
    together = model.predict(data, clips)  # windows of many clips per batch
    alone = np.concatenate([model.predict(data, clips.subset(np.array([i]))) for i in (0, 7, 30)])
    np.testing.assert_allclose(together[[0, 7, 30]], alone, rtol=1e-5, atol=1e-6)


FILL_DISK = """
import resource, signal, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, {root!r})
from tests.helpers.training import stage_job, synthetic_store, tiny_config
from audiotag.training.checkpoints import CheckpointError
from audiotag.training.stage import train_stage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full file system: writes fail, no signal
out = Path({out!r})
def on_epoch(rec):
    if rec.epoch == 1:  # from now on no file may grow past half a checkpoint
        size = next((out / "checkpoints").glob("*.pt")).stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))
data, clips = synthetic_store()
try:
    train_stage(stage_job(out, tiny_config(), data, clips), on_epoch)
except CheckpointError as err:
    print("CheckpointError:", err)
"""


def test_a_full_disk_during_a_checkpoint_is_a_clear_error_and_keeps_the_last(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[3])
    out = tmp_path / "fold"
    proc = subprocess.run(
        [sys.executable, "-c", FILL_DISK.format(root=root, out=str(out))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "CheckpointError:" in proc.stdout, proc.stderr[-2000:]
    assert "epoch 1 is intact" in proc.stdout and "epoch 2" in proc.stdout
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["epoch-0001.pt"]  # no temporary left, the previous one kept
    state = torch.load(out / "checkpoints" / "epoch-0001.pt", weights_only=True)
    assert state["epoch"] == 1
    # With space again, the fold continues from epoch 1.
    config = tiny_config()
    data, clips = synthetic_store()
    resumed = run(out, config, data, clips)
    assert resumed.resumed_from_epoch == 1


KILL_MID_FOLD = """
import os, signal, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)  # as run() below: the same reductions, the same weights
sys.path.insert(0, {root!r})
from tests.helpers.training import stage_job, synthetic_store, tiny_config
from audiotag.training.stage import train_stage
def on_epoch(rec):
    if rec.epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-fold
data, clips = synthetic_store()
train_stage(stage_job(Path({out!r}), tiny_config(), data, clips), on_epoch)
"""


def test_sigkill_mid_fold_then_rerun_continues_from_the_last_epoch(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[3])
    out = tmp_path / "fold"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_FOLD.format(root=root, out=str(out))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0002.pt"]
    seen: list[int] = []
    config = tiny_config()
    data, clips = synthetic_store()
    resumed = run(out, config, data, clips, epochs_seen=seen)
    assert resumed.resumed_from_epoch == 2 and seen == [3, 4]
    straight = run(tmp_path / "straight", config, data, clips)
    wa, wb = _weights(straight.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_two_runs_never_train_the_same_fold_at_once(tmp_path: Path) -> None:
    from audiotag.storage import BusyError, exclusive

    config = tiny_config()
    data, clips = synthetic_store()
    with exclusive(tmp_path, "noisy fold 1"):  # the other run, still training
        with pytest.raises(BusyError, match=r"noisy fold 1 is being trained by another run"):
            run(tmp_path, config, data, clips)
    assert not (tmp_path / "checkpoints").exists()
    assert run(tmp_path, config, data, clips).valid_lwlrap > 0  # free again


def test_folds_trained_at_once_in_threads_train_exactly_as_alone(tmp_path: Path) -> None:
    """Mixup's draws and the initial weights never come from a generator that folds
    training at once share, so a fold's weights do not depend on its neighbours."""
    import threading

    config = tiny_config(
        **{
            "curated.cycles": [{"epochs": 2, "lr": 3e-3}],
            "curated.batch_size": 8,
            "curated.min_steps": 0,
            "curated.scratch_min_steps": 0,
        }
    )
    assert config.stage("curated").mixup
    data, clips = synthetic_store()

    def fold(k: int, out: Path) -> str:
        return run(out, config, data, clips, stage="curated", fold=k).model_path

    alone = [fold(k, tmp_path / f"alone-{k}") for k in range(2)]
    together: dict[int, str] = {}
    runs = [
        threading.Thread(
            target=lambda k=k: together.update({k: fold(k, tmp_path / f"at-once-{k}")})
        )
        for k in range(2)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    for k in range(2):
        wa, wb = _weights(alone[k]), _weights(together[k])
        assert all(torch.equal(wa[key], wb[key]) for key in wa), f"fold {k} differs"


def test_training_and_prediction_flush_denormals_in_their_thread_and_its_workers(
    tmp_path: Path,
) -> None:
    """x86 math on denormal numbers is up to 100x slower; they made the reference
    model's CPU training 4.6x slower (bench/train_throughput.py). A fold's thread, and
    every thread it starts (PyTorch's OpenMP workers too), flushes them to zero."""
    import threading

    def kept() -> bool:
        return (torch.full((1,), 1e-39) * 1.0).item() != 0.0

    config = tiny_config(**{"noisy.cycles": [{"epochs": 1, "lr": 3e-3}]})
    data, clips = synthetic_store()
    seen: dict[str, bool] = {}

    def in_new_thread(name: str) -> None:
        t = threading.Thread(target=lambda: seen.update({name: kept()}))
        t.start()
        t.join()

    def fold() -> None:
        torch.set_flush_denormal(False)  # a thread as PyTorch starts it
        seen["before training"] = kept()
        result = run(tmp_path, config, data, clips)
        seen["after training"] = kept()
        in_new_thread("thread started after training")
        torch.set_flush_denormal(False)
        LoadedModel(Path(result.model_path)).predict(data, clips, EvalSettings(tta=0))
        seen["after prediction"] = kept()

    t = threading.Thread(target=fold)
    t.start()
    t.join()
    assert seen == {
        "before training": True,
        "after training": False,
        "thread started after training": False,
        "after prediction": False,
    }


def test_weights_that_learned_nothing_get_the_from_scratch_floor(tmp_path: Path) -> None:
    from audiotag.training.stage import StageResult, train_stage
    from tests.helpers.training import stage_job

    # Judged against chance on the init fold's own held-out clips.
    assert StageResult("noisy", 0, "m.pt", 0.36, 0.6, chance_lwlrap=0.33).learned(0.05) is False
    assert StageResult("noisy", 0, "m.pt", 0.55, 0.6, chance_lwlrap=0.33).learned(0.05) is True
    assert StageResult("noisy", 0, "m.pt", 0.36, 0.6).learned(0.05) is True  # nothing to judge
    overrides = {
        "curated.cycles": [{"epochs": 2, "lr": 3e-3}],
        "curated.batch_size": 8,
        "curated.min_steps": 0,
        "curated.scratch_min_steps": 40,
    }
    config = tiny_config(**overrides)
    data, clips = synthetic_store()
    noisy = run(tmp_path / "noisy", config, data, clips)
    assert noisy.chance_lwlrap == pytest.approx(0.75, abs=0.1)  # two labels, one each
    steps = {}
    for scratch in (False, True):
        job = stage_job(tmp_path / f"curated-{scratch}", config, data, clips, stage="curated")
        job = job.__class__(
            **{**job.__dict__, "init_weights": Path(noisy.model_path), "from_scratch": scratch}
        )
        steps[scratch] = len(train_stage(job).lrs)
    assert steps[False] == 2 * 4 and steps[True] >= 40  # 32 clips: 4 batches of 8 a pass


def test_a_truncated_checkpoint_no_longer_blocks_its_fold(tmp_path: Path) -> None:
    config = tiny_config()
    data, clips = synthetic_store()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, config, data, clips, stop_at=2)
    path = tmp_path / "checkpoints" / "epoch-0002.pt"
    path.write_bytes(path.read_bytes()[:1000])
    seen: list[int] = []
    result = run(tmp_path, config, data, clips, epochs_seen=seen)
    assert seen == [1, 2, 3, 4] and result.resumed_from_epoch == 0  # from scratch
    assert (tmp_path / "checkpoints" / "epoch-0002.pt.corrupt").exists()
    assert Path(result.model_path).exists()


def test_initial_weights_that_do_not_load_are_named_and_moved_aside(tmp_path: Path) -> None:
    from audiotag.training.stage import InitWeightsError, train_stage
    from tests.helpers.training import stage_job

    config = tiny_config()
    data, clips = synthetic_store()
    noisy = run(tmp_path / "noisy", config, data, clips)
    init = Path(noisy.model_path)
    init.write_bytes(init.read_bytes()[:500])
    job = stage_job(tmp_path / "curated", config, data, clips, "curated", 0, init_weights=init)
    with pytest.raises(InitWeightsError, match=rf"{init}.* do not load .*model.pt.corrupt"):
        train_stage(job)
    assert not init.exists() and init.with_name("model.pt.corrupt").exists()


def test_a_stop_request_stops_the_fold_before_its_next_batch_and_keeps_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C sets the stop flag (flows/cli.py); a fold checks it before every batch, so
    it stops within one batch, keeps the last finished epoch's checkpoint, and a re-run
    ends with the weights of a run never stopped."""
    from audiotag.stopping import StopRequested, clear_stop, request_stop
    from audiotag.training.loop import EpochLoop

    config = tiny_config()
    data, clips = synthetic_store()
    straight = run(tmp_path / "straight", config, data, clips)
    per_epoch = len(straight.lrs) // 4
    batches: list[int] = []
    after_batch = EpochLoop.after_batch

    def counting(loop: EpochLoop) -> None:
        after_batch(loop)
        batches.append(1)
        if len(batches) == 2 * per_epoch + 1:  # one batch into epoch 3
            request_stop()

    monkeypatch.setattr(EpochLoop, "after_batch", counting)
    cause = r"noisy fold 1: stopped on request in epoch 3 of 4; its checkpoint of epoch 2 is kept"
    try:
        with pytest.raises(StopRequested, match=cause):
            run(tmp_path / "b", config, data, clips)
    finally:
        clear_stop()
    assert len(batches) == 2 * per_epoch + 1  # not one batch more
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["epoch-0002.pt"]
    monkeypatch.undo()
    resumed = run(tmp_path / "b", config, data, clips)
    assert resumed.resumed_from_epoch == 2
    wa, wb = _weights(straight.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
