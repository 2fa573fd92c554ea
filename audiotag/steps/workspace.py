"""The work directory: every path a run reads or writes under it, named once (SPEC §4).

Tasks, the CLI and the benches ask a ``Workspace`` for a path; none spells one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    """A run's work directory and the files in it."""

    root: Path

    @classmethod
    def at(cls, workdir: str | Path) -> Workspace:
        """The workspace of ``workdir``, resolved so that every task sees the same paths."""
        return cls(Path(workdir).resolve())

    @property
    def data_dir(self) -> Path:  # the dataset in the FAT2019 layout (unpacked or written here)
        return self.root / "data"

    @property
    def demo_source(self) -> Path:  # the demo dataset's archive, before it is unpacked
        return self.root / "demo-source"

    @property
    def kaggle_source(self) -> Path:  # the competition archive (kept for resuming)
        return self.root / "kaggle-source"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata.parquet"

    @property
    def kept(self) -> Path:
        return self.root / "kept.parquet"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected.parquet"

    @property
    def folds(self) -> Path:
        return self.root / "folds.parquet"

    @property
    def report_dir(self) -> Path:  # data_report.md and its PNG plots
        return self.root / "report"

    def features(self, key: str) -> Path:
        """The memory-mapped log-mel store for one set of files and mel settings."""
        return self.root / "features" / key

    def stage_dir(self, key: str, stage: str, fold: int) -> Path:
        """One stage's fold (0-based ``fold``): checkpoints, ``model.pt``, valid scores."""
        return self.root / "models" / f"{stage}-{key}" / f"fold-{fold + 1}"

    def run_dir(self, name: str) -> Path:
        """One flow run's outputs: submission, oof, scores, the model package."""
        return self.root / "runs" / name

    def run_summary(self, name: str) -> Path:
        """One flow run's summary in markdown (the Prefect UI's run-summary artifact)."""
        return self.run_dir(name) / "summary.md"

    def test_predictions(self, key: str) -> Path:
        """The ensemble's test probabilities for one set of models and test-time settings."""
        return self.root / "predictions" / f"test-{key}.npy"

    def selection(self, key: str) -> Path:  # the noisy clips a stage's init models picked
        return self.root / "models" / f"selection-{key}.parquet"

    @property
    def results(self) -> Path:  # persisted task results (Prefect's local result storage)
        return self.root / "prefect-results"

    @property
    def cache_keys(self) -> Path:  # Prefect's cache records for fold tasks: what a re-run finds
        return self.root / "prefect-cache"

    @property
    def mlflow_db(self) -> Path:  # the default MLflow tracking store
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def mlartifacts(self) -> Path:  # MLflow's artifact root for the SQLite store
        return self.root / "mlartifacts"


# The tag flow's state in the folder it tags: hidden, beside the results file it writes.
TAG_STATE_DIR = ".audiotag-tagging"


@dataclass(frozen=True)
class TagFolder:
    """A folder the tag flow tags, and what the flow keeps in it between runs."""

    root: Path

    @classmethod
    def at(cls, folder: str | Path) -> TagFolder:
        return cls(Path(folder).resolve())

    def output(self, name: str) -> Path:  # the merged results file
        return self.root / name

    @property
    def state(self) -> Path:  # never searched for audio
        return self.root / TAG_STATE_DIR

    @property
    def results(self) -> Path:  # each finished chunk's rows (Prefect's result storage)
        return self.state / "prefect-results"

    @property
    def cache_keys(self) -> Path:  # Prefect's cache records: which chunks a re-run skips
        return self.state / "prefect-cache"

    def model_dir(self, key: str) -> Path:  # a registered model's package, downloaded once
        return self.state / "models" / key
