"""The speed harness runs the suite's own methods and loop on the CPU (figures, not timings)."""

import pytest

from benchmarks.harness import _markdown, run


def test_the_harness_measures_every_figure_for_each_method_and_compute_mode():
    result = run(
        ["--methods", "dfq", "mad", "--compute", "eager", "fast", "--warmup", "1", "--steps",
         "1", "--windows", "1", "--loop-steps", "2", "--loop-rounds", "1"]
    )  # fmt: skip
    rows = {(row["method"], row["compute"]): row for row in result["methods"]}
    assert set(rows) == {(m, c) for m in ("dfq", "mad") for c in ("eager", "fast")}
    for row in rows.values():
        for key in ("generator_steps_per_s", "generator_images_per_s", "student_images_per_s",
                    "rounds_per_s", "round_tflop_per_s", "projected_hours"):  # fmt: skip
            assert row[key] > 0, key
        assert row["generator_gflop_per_step"] > 0 and row["student_gflop_per_step"] > 0
        assert row["loop_round_steps"] == [
            min(row_steps, 2) for row_steps in (3 if row["method"] == "mad" else 1, 10)
        ]
        assert row["loop_over_composed"] > 0
        assert row["utilisation"] is None and row["peak_memory_gib"] is None  # a CPU
    assert set(result["fast_over_eager"]) == {"cnn_small-cnn_tiny/dfq", "cnn_small-cnn_tiny/mad"}
    (teacher_eager, teacher_fast) = result["teachers"]
    assert teacher_eager["architecture"] == "cnn_small" and teacher_eager["images_per_s"] > 0
    assert teacher_fast["compute"] == "fast"
    text = _markdown(result)
    assert text.count("| cnn_small-cnn_tiny |") == 4 and "torch" in text


def test_the_harness_projects_warm_up_rounds_and_synthesis_alone(suite):
    result = run(
        ["--methods", "nayer", "fast10", "--compute", "eager", "--warmup", "1", "--steps", "1",
         "--windows", "1", "--loop-steps", "2", "--loop-rounds", "1"]
    )  # fmt: skip
    for row in result["methods"]:
        schedule, _ = suite.method_settings(row["method"], "digits", "cnn_small-cnn_tiny")
        synthesis = row["round_synthesis_seconds"] / schedule.syntheses_per_round
        student = schedule.student_steps_per_round / row["student_steps_per_s"]
        assert row["round_seconds"] == pytest.approx(row["round_synthesis_seconds"] + student)
        warmup = schedule.warmup_epochs * schedule.warmup_syntheses_per_epoch * synthesis
        rounds = schedule.training_epochs * schedule.rounds_per_epoch
        assert row["projected_synthesis_hours"] * 3600 == pytest.approx(
            warmup + rounds * row["round_synthesis_seconds"]
        )
        assert row["projected_hours"] * 3600 == pytest.approx(
            warmup + rounds * row["round_seconds"]
        )
        assert 0 < row["projected_synthesis_hours"] < row["projected_hours"]
        assert row["student_images"] == schedule.student_images
    assert "| Synthesis (h) | Full run (h) |" in _markdown(result)
