"""A job's folder is written by one process at a time and never over a finished result
(dfkd/runfolder.py): `dfkd distill` (or `train-teacher`) on a finished run's folder refuses other
settings and has nothing to do for the same; a second writer is refused while the first runs; a
folder that cannot be written is one line before any work; a kill's leftovers are removed."""

import json
import subprocess

import pytest

from dfkd.checkpoint import save_model
from dfkd.cli import main
from dfkd.config import config_hash, save_config
from dfkd.models import build_model
from tests.support import files_of


@pytest.fixture
def run(tmp_path, suite):
    """A run config of the embedded default, its teacher file and an empty run folder."""
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, build_model("cnn_small", 10), "cnn_small", "digits", {})
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, str(teacher))
    save_config(config, tmp_path / "run.yaml")
    return {"config": config, "path": tmp_path / "run.yaml", "folder": tmp_path / "seed0"}


def _finish(folder, config) -> None:
    """A finished run's folder, as `dfkd distill` leaves it (its metrics.json written last)."""
    folder.mkdir()
    save_config(config, folder / "config.yaml")
    (folder / "student.pt").write_bytes(b"weights")
    record = {"kind": "distillation", "provenance": {"config_hash": config_hash(config)}}
    (folder / "metrics.json").write_text(json.dumps(record))


def _distill(config_path, folder) -> list[str]:
    return ["distill", "--config", str(config_path), "--out-dir", str(folder)]


def test_a_finished_run_of_other_settings_is_refused_and_kept(run, suite, capsys):
    other = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 1, "t.pt")
    _finish(run["folder"], other)
    before = files_of(run["folder"])

    assert main(_distill(run["path"], run["folder"])) == 2

    assert capsys.readouterr().err.splitlines() == [
        f"error: {run['folder']}/ holds a finished result of other settings (config "
        f"{config_hash(other)}; these are config {config_hash(run['config'])}); choose another "
        "--out-dir, or delete the folder to run it again"
    ]
    assert files_of(run["folder"]) == before


def test_a_finished_run_of_the_same_settings_has_nothing_to_do(run, capsys):
    _finish(run["folder"], run["config"])
    before = files_of(run["folder"])
    assert main(_distill(run["path"], run["folder"])) == 0
    assert "holds this job's finished result" in capsys.readouterr().out
    assert files_of(run["folder"]) == before


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(run, suite, capsys):
    from dfkd.runfolder import LOCK, RunFolder

    other = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 1, "t.pt")
    with RunFolder(run["folder"], other):  # another process's job, of other settings
        assert main(_distill(run["path"], run["folder"])) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: {run['folder']}/ is being written by process ")
        assert (run["folder"] / LOCK).exists()
    assert not (run["folder"] / LOCK).exists()  # released, and removed, when the holder ends


def test_a_kills_leftover_temporary_files_are_removed_when_a_run_resumes(run):
    from dfkd.runfolder import LOCK, RunFolder

    run["folder"].mkdir()
    leftovers = [".checkpoint.pt.0a1b2c.tmp", ".metrics.json.3d4e5f.tmp", ".student.pt.aa.tmp"]
    for name in leftovers:
        (run["folder"] / name).write_bytes(b"half")
    (run["folder"] / "checkpoint.pt").write_bytes(b"kept")
    with RunFolder(run["folder"], run["config"]) as claim:
        assert not claim.finished
        assert sorted(p.name for p in run["folder"].iterdir()) == [LOCK, "checkpoint.pt"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only bind mount; needs the right to mount."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_folder_is_one_line_before_any_work(run, read_only_folder, capsys):
    assert main(_distill(run["path"], read_only_folder / "seed0")) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot write to {read_only_folder}/seed0/ (Read-only file system); make it "
        "writable or choose another --out-dir"
    ]
