"""Profiles for running the suite on more than one device."""

import os

import pytest
import yaml

from dfkd.errors import UserError

REPOSITORY_PROFILES = ("default", "gpus", "slurm")


def test_a_job_takes_the_first_free_gpu_slot_and_all_taken_is_one_line(tmp_path, monkeypatch):
    import multiprocessing

    monkeypatch.setenv("DFKD_GPU_SLOTS", "2")
    monkeypatch.setenv("DFKD_GPU_SLOT_DIR", str(tmp_path))
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:  # two holders at once: processes, as Snakemake's jobs are
        first = pool.apply_async(_hold_a_slot, (str(tmp_path / "release"),))
        second = pool.apply_async(_hold_a_slot, (str(tmp_path / "release"),))
        _wait_for(lambda: len(list(tmp_path.glob("held-*"))) == 2)
        with pytest.raises(UserError, match=r"all 2 GPU slots .* are taken"):
            _take_in_this_process()
        (tmp_path / "release").touch()
        assert sorted([first.get(30), second.get(30)]) == [0, 1]


def _take_in_this_process() -> int | None:
    import dfkd.slots

    dfkd.slots._held = None
    return dfkd.slots.gpu_slot()


def _hold_a_slot(release: str) -> int:
    import time
    from pathlib import Path

    from dfkd.slots import gpu_slot

    slot = gpu_slot()
    Path(os.environ["DFKD_GPU_SLOT_DIR"], f"held-{slot}").touch()
    while not Path(release).exists():
        time.sleep(0.05)
    return slot


def _wait_for(condition, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("name", REPOSITORY_PROFILES)
def test_every_profile_names_only_rules_of_the_workflow(name):
    from tests.support import REPOSITORY

    settings = yaml.safe_load((REPOSITORY / "profiles" / name / "config.yaml").read_text())
    rules = {
        line.split()[1].rstrip(":")
        for path in (REPOSITORY / "pipelines").glob("*.smk")
        for line in path.read_text().splitlines()
        if line.startswith("rule ")
    }
    assert set(settings.get("set-resources", {})) <= rules
