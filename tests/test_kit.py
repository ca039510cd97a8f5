"""The device kit's pieces that run without a GPU: parity of first steps, the kit's folder, the
summary of its results (benchmarks/gpu/rehearse.sh runs the whole kit on the CPU)."""

import argparse
import json
import tarfile

import pytest
import torch

from benchmarks import parity
from benchmarks.gpu import kit, report, stages


def test_largest_difference_is_taken_per_phase_and_relative_to_eager():
    eager = [("generator", -20.0), ("student", 0.5), ("student", 0.0), ("generator", -10.0)]
    fast = [("generator", -20.5), ("student", 0.25), ("student", 0.002), ("generator", -10.0)]
    result = parity.largest_difference(eager, fast)
    assert result["generator"] | {} == {
        "steps": 2, "max_abs": 0.5, "max_abs_step": 1, "max_rel": 0.5 / 20, "max_rel_step": 1,
        "first_abs": 0.5, "finite": True,
    }  # fmt: skip
    student = result["student"]
    assert (student["max_abs"], student["max_abs_step"]) == (0.25, 1)
    # |eager| below 1e-3 counts as 1e-3: 0.002 / 1e-3
    assert student["max_rel"] == pytest.approx(2.0) and student["max_rel_step"] == 2
    result = parity.largest_difference([("student", 1.0)], [("student", float("nan"))])
    assert result["student"]["finite"] is False
    with pytest.raises(ValueError, match="different steps"):
        parity.largest_difference([("student", 1.0)], [("generator", 1.0)])


def test_first_steps_follow_the_loop_and_eager_equals_the_cpu_fast_mode(suite):
    """On the CPU `fast` only swaps in foreach optimizer kernels: the same arithmetic, so the
    first steps agree to float32 rounding and nothing is compiled."""
    row = parity.compare(suite, "dfq", "digits", "cnn_small-cnn_tiny", torch.device("cpu"),
                         seed=0, rounds=2, steps=3, batch=8)  # fmt: skip
    # DFQ's round is 1 generator step then 10 student steps, capped at 3: G S S S G S S S.
    phases = [phase for phase, _ in row["first_losses"]["eager"]]
    assert phases == ["generator", "student", "student", "student"]
    assert row["losses"]["generator"]["steps"] == 2 and row["losses"]["student"]["steps"] == 6
    for phase in ("generator", "student"):
        assert row["losses"][phase]["max_rel"] < 1e-5, row["losses"]
    assert row["compiler"]["unique_graphs"] == 0 and row["compiler"]["graph_breaks"] == {}


def test_the_kit_covers_every_method_file_the_experiment_first(suite):
    names = stages.methods_in_order(suite)
    assert sorted(names) == sorted(suite.methods)
    assert names[: len(suite.params.experiments["cifar10"].methods)] == list(
        suite.params.experiments["cifar10"].methods
    )


def test_prepare_fills_the_kit_and_counts_it_against_the_carry_limit(tmp_path, monkeypatch):
    reference = tmp_path / "CMI"
    (reference / "datafree").mkdir(parents=True)
    (reference / "datafree" / "__init__.py").write_text("x = 1\n")
    (reference / "README.md").write_text("not taken\n")
    data = tmp_path / "cifar10-jpeg.tar.gz"
    data.write_bytes(b"\0" * 1000)
    monkeypatch.setattr(kit, "KIT", tmp_path / "kit")
    monkeypatch.setattr(kit, "WHEELS", ())  # nothing to download in a test
    assert kit.main(["prepare", "--reference", str(reference), "--data", str(data)]) == 0
    manifest = json.loads((tmp_path / "kit" / "manifest.json").read_text())
    assert manifest["files"]["data/cifar10-jpeg.tar.gz"]["bytes"] == 1000
    assert manifest["working_tree_bytes"] > 0
    with tarfile.open(tmp_path / "kit" / "reference" / "CMI.tar") as tar:
        assert tar.getnames() == ["datafree/__init__.py"]  # the Python files only
    monkeypatch.setattr(kit, "LIMIT", manifest["kit_bytes"])
    assert kit.main(["prepare", "--reference", str(reference), "--data", str(data)]) == 2


def test_run_refuses_without_a_kit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kit, "KIT", tmp_path / "none")
    assert kit.main(["run", "--deadline", "60", "--out", str(tmp_path / "out")]) == 2
    assert "run `python benchmarks/gpu/kit.py prepare` first" in capsys.readouterr().err


def test_the_summary_shows_every_stage_that_wrote_a_file_and_its_errors(tmp_path):
    environment = {"device": "NVIDIA H200", "driver": "580.1", "cudnn": 91900}
    rows = {
        "a_parity": [{"method": "dfq", "batch": 256, "eager_seconds": 1.0, "fast_seconds": 50.0,
                      "losses": {"student": {"max_abs": 0.01, "max_rel": 0.001, "finite": True}},
                      "compiler": {"graph_breaks": {"hook: list.append": 2}, "unique_graphs": 4}},
                     {"method": "cmi", "error": "RuntimeError: boom"}],
        "e_quick": [{"run": "teacher", "architecture": "resnet34", "compute": "fast",
                     "epochs_planned": 20, "epochs_completed": 2, "exit_status": 143,
                     "history": [{"acc1": 40.0, "train_seconds": 3.0},
                                 {"acc1": 55.5, "train_seconds": 5.0}]}],
    }  # fmt: skip
    for name, stage_rows in rows.items():
        data = {"environment": environment, "status": "complete", "rows": stage_rows}
        (tmp_path / f"{name}.json").write_text(json.dumps(data | {"seconds": 12.0}))
    versions = {"python": "3.12.3", "cuda": "13.0", "packages": {"torch": "2.11.0"}}
    arguments = argparse.Namespace(cpu_size=False, deadline=390)
    text = report.summary(tmp_path, versions, {"a": "exit 0 after 80 s"}, arguments, 300.0)
    assert "# Device kit (device size): NVIDIA H200" in text and "torch 2.11.0" in text
    assert "| dfq | 256 | 1.0 | 50.0 | – | 0.01 (1.0e-03) | 2 | 4 | – |  |" in text
    assert "| cmi | – | – | – | – | – | – | – | – | RuntimeError: boom |" in text
    assert "hook: list.append (2x)" in text
    assert "| teacher resnet34 | fast | 2 / 20 | 55.50 | 2.5 | – | 143 |" in text
    assert (
        "| b_harness: speed, eager and fast, at the published batches | 1.5 | not run | – |" in text
    )
