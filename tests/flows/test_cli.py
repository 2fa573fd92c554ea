from pathlib import Path

from flows.cli import main


def test_bad_override_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    code = main(["run", "--workdir", str(tmp_path / "w"), "--set", "noisy.cycles.0.epochs=-2"])
    assert code == 2
    assert "epochs" in capsys.readouterr().err
    assert not (tmp_path / "w" / "data").exists()


def test_unknown_field_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["run", "--workdir", str(tmp_path), "--set", "noisy.nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_demo_data_writes_the_competition_zip(tmp_path: Path, capsys) -> None:
    assert main(["demo-data", str(tmp_path), "--scale", "0.05"]) == 0
    assert Path(capsys.readouterr().out.strip()).name == "freesound-audio-tagging-2019.zip"
