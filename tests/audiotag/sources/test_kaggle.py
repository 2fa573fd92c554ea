"""``--source kaggle``: the real ``kaggle`` client against a stand-in Kaggle API on 127.0.0.1.

kagglesdk's ``KAGGLE_API_ENVIRONMENT=TEST`` points the client at
``http://localhost:7777``, where :mod:`tests.kaggle_standin` serves a demo archive.
Every other destination goes through a proxy address where nothing listens, so no
test can reach the internet.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiotag.data.layout import AUDIO_DIRS, COMPETITION, check_layout
from audiotag.sources import kaggle as ks
from audiotag.sources.archive import MARKER, UnsafeArchiveError
from audiotag.sources.demo import write_demo_dataset
from audiotag.sources.kaggle import credentials, disk
from audiotag.sources.local import prepare_source
from audiotag.steps.workspace import Workspace
from tests.helpers import kaggle_standin
from tests.helpers.kaggle_standin import KEY, TOKEN, USERNAME, KaggleStandin

ROOT = Path(__file__).resolve().parents[3]
PLANTED = "KGAT_planted_secret_do_not_log_42"


def _slip_archive(demo: Path, out: Path, nested: bool) -> Path:
    """The demo archive plus a member that climbs out of its target directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(demo) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if nested and info.filename == "train_curated.zip":
                buf = io.BytesIO()
                with zipfile.ZipFile(io.BytesIO(data)) as inner, zipfile.ZipFile(buf, "w") as new:
                    for member in inner.infolist():
                        new.writestr(member, inner.read(member))
                    new.writestr("../../escaped.wav", b"RIFF")
                data = buf.getvalue()
            dst.writestr(info, data)
        if not nested:
            dst.writestr("../escaped.txt", b"outside")
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("kaggle-archives")
    demo = write_demo_dataset(tmp / "demo", seed=5, scale=0.05)
    return {
        "demo": demo,
        "slip": _slip_archive(demo, tmp / "slip" / "outer.zip", nested=False),
        "nested-slip": _slip_archive(demo, tmp / "nested" / "outer.zip", nested=True),
    }


@pytest.fixture(scope="module")
def standin(archives: dict[str, Path]) -> Iterator[KaggleStandin]:
    with KaggleStandin(archives["demo"], COMPETITION) as server:
        yield server


@pytest.fixture
def server(standin: KaggleStandin, archives: dict[str, Path]) -> KaggleStandin:
    standin.reset()
    standin.serve(archives["demo"])
    return standin


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials, HOME in tmp_path, the client on the stand-in, nothing else reachable."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    # Anything not for the stand-in goes to a port where nothing listens.
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    return home


@pytest.fixture
def legacy_key(kaggle_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)


def _workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "work")


def _archive(tmp_path: Path) -> Path:
    return _workspace(tmp_path).kaggle_source / f"{COMPETITION}.zip"


def _download(tmp_path: Path, **kwargs: object) -> Path:
    ws = _workspace(tmp_path)
    return ks.download_competition(ws.data_dir, ws.kaggle_source, **kwargs)


def test_downloads_into_the_layout(
    server: KaggleStandin, legacy_key: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="audiotag.kaggle")
    data_dir = _download(tmp_path)
    check_layout(data_dir)
    for sub in AUDIO_DIRS.values():
        assert any((data_dir / sub).glob("*.wav")), sub
    assert (data_dir / "sample_submission.csv").exists()
    assert not list(data_dir.glob("*.zip"))  # nested zips unpacked and removed
    archive = _archive(tmp_path)
    assert archive.stat().st_size == len(server.data)
    assert [r for r in server.requests if r[0] == "POST"] == [
        ("POST", "/api/v1/competitions.CompetitionApiService/DownloadDataFiles")
    ]
    assert server.downloads == 1 and "Basic" in server.auth_seen
    assert "MB/s" in caplog.text and "downloaded" in caplog.text


def test_second_run_fetches_nothing_even_offline_or_without_the_archive(
    server: KaggleStandin, legacy_key: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = _download(tmp_path)
    marker = (data_dir / MARKER).read_text()
    server.reset()
    server.mode = "hangup"  # any request would fail
    monkeypatch.delenv("KAGGLE_KEY")  # and none is made, so no credentials are needed
    assert _download(tmp_path) == data_dir
    _archive(tmp_path).unlink()  # to save space
    assert _download(tmp_path) == data_dir
    assert server.requests == []
    assert (data_dir / MARKER).read_text() == marker


def test_a_verified_archive_is_unpacked_without_fetching(
    server: KaggleStandin, legacy_key: None, tmp_path: Path
) -> None:
    data_dir = _download(tmp_path)
    (data_dir / MARKER).unlink()  # as if the unpacking had been interrupted
    server.reset()
    _download(tmp_path)
    assert server.requests == []
    check_layout(data_dir)


def test_a_truncated_archive_is_fetched_again(
    server: KaggleStandin, legacy_key: None, tmp_path: Path
) -> None:
    archive = _archive(tmp_path)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(server.data[: len(server.data) // 2])  # an interrupted download
    data_dir = _download(tmp_path)
    assert archive.read_bytes() == server.data
    check_layout(data_dir)

    with open(archive, "r+b") as f:  # later cut short on disk
        f.truncate(len(server.data) - 1000)
    server.reset()
    _download(tmp_path)
    assert server.downloads == 1
    assert archive.read_bytes() == server.data


def test_a_dropped_connection_resumes_and_succeeds(
    server: KaggleStandin, legacy_key: None, tmp_path: Path
) -> None:
    server.drop_after = len(server.data) // 3
    data_dir = _download(tmp_path)
    check_layout(data_dir)
    assert server.downloads == 2
    assert server.ranges[0] is None and server.ranges[1].startswith("bytes=")  # resumed
    archive = _archive(tmp_path)
    assert archive.read_bytes() == server.data


def test_api_token_file_authenticates_with_bearer(
    server: KaggleStandin, kaggle_env: Path, tmp_path: Path
) -> None:
    (kaggle_env / ".kaggle").mkdir()
    (kaggle_env / ".kaggle" / "access_token").write_text(TOKEN + "\n")
    check_layout(_download(tmp_path))
    assert ("POST", "/api/v1/security.OAuthService/IntrospectToken") in server.requests
    assert set(server.auth_seen) == {"Bearer"}


def test_kaggle_json_authenticates(
    server: KaggleStandin, kaggle_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text(f'{{"username": "{USERNAME}", "key": "{KEY}"}}')
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    assert ks.find_credentials().source == str(config / "kaggle.json")
    check_layout(_download(tmp_path))
    assert "Basic" in server.auth_seen


def test_no_credentials_says_how_to_create_a_token(
    server: KaggleStandin, kaggle_env: Path, tmp_path: Path
) -> None:
    with pytest.raises(ks.KaggleCredentialsError) as err:
        ws = _workspace(tmp_path)
        prepare_source("kaggle", ws.data_dir, demo_dir=ws.demo_source, kaggle_dir=ws.kaggle_source)
    text = str(err.value)
    assert "https://www.kaggle.com/settings/api" in text and "KAGGLE_API_TOKEN" in text
    assert "~/.kaggle/access_token" in text and "rules" in text
    assert server.requests == []


def test_401_rejected_credentials(
    server: KaggleStandin, kaggle_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", "an-old-revoked-key")
    with pytest.raises(ks.KaggleCredentialsError) as err:
        _download(tmp_path)
    assert err.value.status == 401
    assert "KAGGLE_USERNAME/KAGGLE_KEY" in str(err.value) and "new token" in str(err.value)
    assert server.downloads == 0


def test_403_says_where_to_accept_the_rules(
    server: KaggleStandin, legacy_key: None, tmp_path: Path
) -> None:
    server.mode = "403"
    with pytest.raises(ks.KaggleAccessError) as err:
        _download(tmp_path)
    assert err.value.status == 403
    assert f"https://www.kaggle.com/c/{COMPETITION}/rules" in str(err.value)
    assert server.downloads == 0


def test_404_not_found(server: KaggleStandin, legacy_key: None, tmp_path: Path) -> None:
    with pytest.raises(ks.KaggleAccessError) as err:
        _download(tmp_path, competition="no-such-competition")
    assert err.value.status == 404 and "no-such-competition" in str(err.value)


def test_network_failure_retries_with_backoff_then_says_so(
    server: KaggleStandin, legacy_key: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.mode = "hangup"
    with pytest.raises(ks.KaggleNetworkError) as err:
        _download(tmp_path, attempts=3, backoff_s=0.01)
    assert "after 3 attempts" in str(err.value) and "network" in str(err.value)
    assert len(server.requests) == 3
    assert caplog.text.count("trying again") == 2


def test_an_offline_machine_fails_at_once_saying_so_and_is_not_retried(
    legacy_key: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No stand-in: the client goes to Kaggle itself, through the fixture's proxy address
    where nothing listens, so no connection ever opens (as offline). It took 1 min 50 s
    of retries before; now the first refusal is the answer, and final for the task."""
    from tasks.data import _retry_network_only

    monkeypatch.delenv("KAGGLE_API_ENVIRONMENT")
    with pytest.raises(ks.KaggleUnreachableError) as err:
        _download(tmp_path, attempts=3, backoff_s=0.01)
    text = str(err.value)
    assert "could not connect to Kaggle through the proxy" in text and "offline" in text
    assert KEY not in text
    assert "trying again" not in caplog.text
    assert isinstance(err.value, ks.KaggleNetworkError)  # still a network error to callers

    class _State:
        def result(self) -> None:
            raise err.value

    assert not _retry_network_only(None, None, _State())


def test_not_enough_disk_space_is_refused_before_downloading(
    server: KaggleStandin, legacy_key: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = disk.shutil.disk_usage
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: real(p)._replace(free=1_000_000))
    with pytest.raises(ks.DiskSpaceError) as err:
        _download(tmp_path)
    text = str(err.value)
    assert "1.0 MB free" in text and "to download" in text and "to unpack" in text
    assert server.served_bytes == 0
    assert not _archive(tmp_path).exists()


@pytest.mark.parametrize("kind", ["slip", "nested-slip"])
def test_zip_slip_member_is_refused(
    server: KaggleStandin,
    legacy_key: None,
    tmp_path: Path,
    archives: dict[str, Path],
    kind: str,
) -> None:
    server.serve(archives[kind])
    with pytest.raises(UnsafeArchiveError, match="escaped"):
        _download(tmp_path)
    assert not list(tmp_path.rglob("escaped*"))


def test_no_token_in_logs_output_or_errors(
    server: KaggleStandin,
    kaggle_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    _download(tmp_path / "ok")
    server.mode = "403"
    with pytest.raises(ks.KaggleAccessError) as err:
        _download(tmp_path / "403")
    texts.append(str(err.value))
    server.mode = "ok"
    monkeypatch.setenv("KAGGLE_API_TOKEN", PLANTED)  # a token Kaggle does not know
    with pytest.raises(ks.KaggleCredentialsError) as err:
        _download(tmp_path / "bad")
    texts.append(str(err.value))
    assert "KAGGLE_API_TOKEN" in texts[-1]
    out, errs = capfd.readouterr()
    for text in [caplog.text, out, errs, *texts]:
        assert TOKEN not in text and PLANTED not in text
    assert set(server.auth_seen) == {"Bearer"}


def test_scrub_and_credentials_description(kaggle_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", PLANTED)
    creds = ks.find_credentials()
    assert creds.source == "the KAGGLE_API_TOKEN environment variable"
    assert PLANTED not in repr(creds.source)
    assert credentials._scrub(f"Authorization: Bearer {PLANTED}", creds.secrets) == (
        "Authorization: Bearer ***"
    )


def test_progress_lines_every_5_percent_or_5_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="audiotag.kaggle")
    now = [0.0]
    progress = ks.DownloadProgress("x.zip", 1_000_000_000, clock=lambda: now[0])
    now[0] = 1.0
    assert progress.update(10_000_000) is None  # 1 %, 1 s: not yet
    now[0] = 2.0
    line = progress.update(60_000_000)  # past 5 %
    assert line == "x.zip: 60.0 MB of 1.00 GB (6%), 30.0 MB/s, about 31 s left"
    now[0] = 7.5
    assert progress.update(80_000_000) is not None  # 5.5 s later, though under 10 %
    now[0] = 10.0
    assert "downloaded 1.00 GB in 10.0 s (100.0 MB/s)" in progress.finish(1_000_000_000)
    assert caplog.text.count("x.zip") == 3


def test_audiotag_and_its_cli_import_without_kaggle() -> None:
    code = (
        "import sys, audiotag.sources.local, audiotag.sources.kaggle, flows.cli;"
        "assert 'kaggle' not in sys.modules, 'kaggle imported'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


@pytest.mark.slow
def test_whole_dag_from_kaggle(
    server: KaggleStandin,
    legacy_key: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.tracking import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow

    server.serve(write_demo_dataset(tmp_path / "src", seed=3, scale=0.12))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp_path / "prefect-results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with prefect_test_harness(server_startup_timeout=120):
        summary = train_flow(
            source="kaggle",
            workdir=str(tmp_path / "work"),
            preset="debug",
            overrides={"eval.tta": 0},
        )
    assert Path(summary["submission"]).exists()
    assert server.downloads == 1
    params = MlflowClient(summary["mlflow_uri"]).get_run(summary["mlflow_run_id"]).data.params
    assert KEY not in str(params)


def test_standin_serves_on_kagglesdks_test_endpoint() -> None:
    from kagglesdk.kaggle_env import KaggleEnv, get_endpoint

    assert get_endpoint(KaggleEnv.TEST) == f"http://localhost:{kaggle_standin.PORT}"
