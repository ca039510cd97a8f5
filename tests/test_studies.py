"""Declared studies: their grids are the paper's, their cells reach the runs, and a study renders
end to end on the embedded data with the published values beside ours."""

import itertools
import json
import shutil

import pytest
import yaml

from dfkd.config import load_suite, read_yaml
from dfkd.curriculum import adversarial_weight
from dfkd.errors import ConfigError, UserError
from dfkd.reporting.studies import load_study_runs
from tests.support import BIN, REPOSITORY, copy_repository, run_command, shrink_tiny_protocol


def _grid(suite, name: str) -> set[tuple[str, ...]]:
    return {cell.labels for cell in suite.study(name).cells.values()}


def test_each_study_has_the_papers_grid(suite):
    assert _grid(suite, "table5") == set(itertools.product(["no", "yes"], ["1.0", "Eq. 15"]))
    assert _grid(suite, "table6") == {("0",), ("infinity",), ("Eq. 15",)}
    assert _grid(suite, "figure7") == {("hard",), ("soft",), ("logarithm",)}
    assert len(_grid(suite, "figure8")) == 8
    assert _grid(suite, "figure9") == {("2.0",), ("2.2",), ("2.5",), ("2.8",)}
    assert _grid(suite, "figure10") == set(
        itertools.product(["1/5", "1/4", "1/3"], ["2/3", "3/4", "4/5"])
    )
    methods = ["dafl", "adi", "cmi", "cudfkd"]
    assert _grid(suite, "noisy_teacher") == set(itertools.product(methods, ["trained", "noisy"]))
    assert suite.study("noisy_teacher").seeds == (0, 10, 20)  # §5.4
    mad_types = {
        ("uncond", "0"), ("cat", "0.1"), ("cat", "0.3"), ("cat", "3.0"), ("cat", "10.0"),
        ("sum", "0.1"),
    }  # fmt: skip
    assert _grid(suite, "mad_generators") == _grid(suite, "mad_generators_imagenet") == mad_types
    assert _grid(suite, "mad_momentum") == {("0.2",), ("0.95",), ("0.999",)}
    assert _grid(suite, "mad_branches") == {("1", "1"), ("0", "1"), ("1", "0")}


@pytest.mark.parametrize("study", ["mad_generators", "mad_generators_imagenet"])
def test_the_mad_generator_cells_change_what_their_labels_say(suite, study):
    for labels in [("uncond", "0"), ("cat", "0.1"), ("cat", "0.3"), ("cat", "3.0"),
                   ("cat", "10.0"), ("sum", "0.1")]:  # fmt: skip
        cell = _hyperparameters(suite, study, labels)
        assert (cell["generator"], cell["nll_weight"]) == (f"mad_{labels[0]}", float(labels[1]))


def test_the_mad_cells_change_what_their_labels_say(suite):
    for alpha in ("0.2", "0.95", "0.999"):
        assert _hyperparameters(suite, "mad_momentum", (alpha,))["ema_momentum"] == float(alpha)
    for labels in [("1", "1"), ("0", "1"), ("1", "0")]:
        cell = _hyperparameters(suite, "mad_branches", labels)
        weights = (cell["generator_sample_weight"], cell["ema_sample_weight"])
        assert weights == (float(labels[0]), float(labels[1]))


def test_table5_and_table6_carry_the_published_values(suite):
    table5 = {c.labels: c.published for c in suite.study("table5").cells.values()}
    assert (table5[("no", "1.0")].acc1, table5[("no", "1.0")].t90_hours) == (94.61, 3.98)
    assert (table5[("yes", "1.0")].agree1, table5[("yes", "1.0")].t90_hours) == (97.59, 1.21)
    assert (table5[("no", "Eq. 15")].lp, table5[("no", "Eq. 15")].t90_hours) == (0.8806, 3.28)
    assert (table5[("yes", "Eq. 15")].acc1, table5[("yes", "Eq. 15")].t90_hours) == (95.28, 0.71)
    table6 = {c.labels: c.published.acc1 for c in suite.study("table6").cells.values()}
    assert table6 == {("0",): 93.63, ("infinity",): 94.92, ("Eq. 15",): 95.28}


def _hyperparameters(suite, study: str, labels: tuple[str, ...]) -> dict:
    (cell,) = [k for k, c in suite.study(study).cells.items() if c.labels == labels]
    return suite.study_run_config(study, cell, suite.study(study).seeds[0], "t.pt").hyperparameters


def _alpha_over_the_run(h: dict, epochs: int) -> list[float]:
    return [
        adversarial_weight(
            h["adversarial_schedule"], e, epochs, h["adversarial_start"], h["adversarial_slope"],
            h["ramp_begin_fraction"], h["ramp_end_fraction"],
        )
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def _run_config(suite, study: str, labels: tuple[str, ...]):
    (cell,) = [k for k, c in suite.study(study).cells.items() if c.labels == labels]
    return suite.study_run_config(study, cell, suite.study(study).seeds[0], "t.pt")


def test_table5s_first_line_is_dfq_for_the_epochs_of_section_5_1(suite):
    # §5.5: "Compared with DFQ (line 1)"; its values are Table 1's DFQ cell.
    config = _run_config(suite, "table5", ("no", "1.0"))
    assert (config.method, config.loop.epochs) == ("dfq", 250)
    table1 = suite.published["results"]["cifar10"]["resnet34-resnet18"]["dfq"]
    line1 = suite.study("table5").cells["dfq"].published
    assert (line1.acc1, line1.agree1, line1.lp) == (table1.acc1, table1.agree1, table1.lp)


def test_figure8_sweeps_the_slope_of_eq15_on_cifar100(suite):
    study = suite.study("figure8")
    assert (study.experiment, study.pair) == ("cifar100", "resnet34-resnet18")
    slopes = [
        _run_config(suite, "figure8", cell.labels).hyperparameters["adversarial_slope"]
        for cell in study.cells.values()
    ]
    assert slopes == pytest.approx([0.05 * k for k in range(1, 9)])  # §5.6: [0.05, 0.4], 0.05
    labels = [float(cell.labels[0]) for cell in study.cells.values()]
    assert labels == pytest.approx(slopes)


def test_every_noisy_teacher_cell_runs_section_5_4s_budget(suite):
    # §5.1: every method 250 epochs on CIFAR-10; §5.4: batch 768.
    for cell in suite.study("noisy_teacher").cells.values():
        config = _run_config(suite, "noisy_teacher", cell.labels)
        assert (config.method, config.loop.epochs, config.loop.batch_size) == (
            cell.labels[0],
            250,
            768,
        ), cell.labels
    assert suite.studies.teacher_variants["noisy"].published_acc1 == 94.07  # §5.4


def test_the_embedded_data_studies_change_what_their_labels_say(suite):
    for labels in [("1", "20"), ("20", "0"), ("20", "20")]:
        h = _hyperparameters(suite, "cudfkd_objective", labels)
        assert (h["one_hot_weight"], h["class_entropy_weight"]) == tuple(map(float, labels))
    for kept in ("best", "last"):
        assert _hyperparameters(suite, "adi_kept_batch", (kept,))["kept_batch"] == kept


def test_the_cells_change_what_their_labels_say(suite):
    full = _hyperparameters(suite, "table5", ("yes", "Eq. 15"))
    assert full["self_paced"] == "log" and full["adversarial_schedule"] == "eq15"
    assert _alpha_over_the_run(full, 250)[0] == 0 < _alpha_over_the_run(full, 250)[-1]
    zero = _hyperparameters(suite, "table6", ("0",))
    assert set(_alpha_over_the_run(zero, 250)) == {0.0}
    infinity = _hyperparameters(suite, "table6", ("infinity",))
    weights = ("bn_statistics_weight", "one_hot_weight", "class_entropy_weight")
    assert [infinity[w] for w in weights] == [0, 0, 0]
    assert set(_alpha_over_the_run(infinity, 250)) == {1.0}
    for begin, end in itertools.product(["1/5", "1/4", "1/3"], ["2/3", "3/4", "4/5"]):
        cell = _hyperparameters(suite, "figure10", (begin, end))
        assert cell["ramp_begin_fraction"] == pytest.approx(eval(begin), abs=1e-4)
        assert cell["ramp_end_fraction"] == pytest.approx(eval(end), abs=1e-4)
        assert cell["student_loss_type"] == "l1"  # CIFAR-100's Table 7 column
    for t in ("4", "10", "20", "40"):
        cell = _hyperparameters(suite, "figure11", (t,))
        assert cell["student_temperature"] == cell["class_entropy_temperature"] == float(t)


def test_a_noisy_teacher_cell_is_distilled_from_the_noisy_teacher(suite):
    plan = run_command(
        [str(BIN / "snakemake"), "-n", "--cores", "1", "reports/studies/noisy_teacher.md"],
        REPOSITORY,
    ).stdout
    assert "train_teacher_variant        1" in plan
    variant = suite.teacher_variant_config("paper", "cifar10", "noisy", "resnet34").recipe
    assert (variant.epochs, variant.optimizer.learning_rate) == (200, 1.0)  # §5.4
    assert variant.optimizer.schedule == "cosine"
    for line in plan.splitlines():
        if "studies/noisy_teacher/adi_noisy/seed10/config.yaml" in line:
            break
    else:
        pytest.fail("no job for the noisy ADI cell")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["table5"]["cells"]["eq15"].update(labels=["no"]), "1 labels for 2 columns"),
        (lambda s: s["table5"]["cells"]["eq15"].update(method="mad9"), "unknown method 'mad9'"),
        (lambda s: s["table6"]["cells"]["zero"].update(teacher="loud"), "'loud' is neither"),
        (lambda s: s["table6"].update(experiment="mnist"), "no experiment 'mnist'"),
        (
            lambda s: s["figure7"]["cells"]["hard"]["hyperparameters"].update(self_paced="hardest"),
            "studies.figure7.cells.hard",
        ),
    ],
)
def test_a_bad_study_is_one_line_naming_it(tmp_path, edit, message):
    params_dir = tmp_path / "params"
    shutil.copytree(REPOSITORY / "params", params_dir)
    studies = yaml.safe_load((params_dir / "studies.yaml").read_text())
    edit(studies["studies"])
    (params_dir / "studies.yaml").write_text(yaml.safe_dump(studies))
    with pytest.raises(ConfigError) as error:
        load_suite(read_yaml(REPOSITORY / "params.yaml"), params_dir)
    lines = str(error.value).splitlines()
    assert len(lines) == 1 and message in lines[0] and "studies.yaml" in lines[0]


def test_a_study_report_refuses_a_grid_that_lost_a_cell(suite):
    study = suite.study("table6")
    with pytest.raises(UserError, match="lack zero seed 0"):
        load_study_runs([], study)


def _run_on_the_embedded_data(tmp_path, name: str, drop: tuple[str, ...] = ()):
    """A copy of the repository whose study `name` (less the cells `drop`) runs on the digits,
    one seed, shrunk protocol; runs it and returns the copy and the table's path."""
    repository = copy_repository(tmp_path)
    shrink_tiny_protocol(repository)
    path = repository / "params/studies.yaml"
    studies = yaml.safe_load(path.read_text())
    study = studies["studies"][name]
    study.update(experiment="digits", pair="cnn_small-cnn_tiny", seeds=[0])
    for cell in drop:
        del study["cells"][cell]
    path.write_text(yaml.safe_dump(studies, sort_keys=False))
    run_command(["git", "commit", "-qam", f"{name} on digits"], repository)
    target = f"reports/studies/{name}.md"
    run_command([str(BIN / "snakemake"), "--cores", "all", target], repository)
    return repository, target


@pytest.mark.slow
def test_a_study_renders_on_the_embedded_data_with_the_published_values(tmp_path):
    repository, target = _run_on_the_embedded_data(tmp_path, "table5")

    table = (repository / target).read_text()
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| no |") or line.startswith("| yes |")
    ]
    assert len(rows) == 4
    for published in ("[94.61]", "[97.07]", "[0.8492]", "[3.98 h]", "[95.28]", "[0.71 h]"):
        assert published in table
    assert "protocol `tiny`" in table and "cnn_small (trained)" in table
    latex = (repository / "reports/studies/table5.tex").read_text()
    assert "\\toprule" in latex and "Eq. 15" in latex
    # Each cell ran with its own settings.
    runs = repository / "results/tiny/digits/studies/table5"
    line1 = yaml.safe_load((runs / "dfq/seed0/config.yaml").read_text())
    assert line1["method"] == "dfq" and "self_paced" not in line1["hyperparameters"]
    full = yaml.safe_load((runs / "cudfkd/seed0/config.yaml").read_text())
    assert full["hyperparameters"]["self_paced"] == "log"
    finals = {
        cell.name: json.loads((cell / "seed0/metrics.json").read_text())["summary"]["final_acc1"]
        for cell in runs.iterdir()
    }
    assert len(finals) == 4 and len(set(finals.values())) > 1
    again = run_command([str(BIN / "snakemake"), "--cores", "all", target], repository)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_reduced_mad_study_runs_on_the_embedded_data(tmp_path):
    # The reduced grid: one source of samples at a time.
    repository, target = _run_on_the_embedded_data(tmp_path, "mad_branches", drop=("both",))

    table = (repository / target).read_text()
    assert "| 0 | 1 |" in table and "| 1 | 0 |" in table
    runs = repository / "results/tiny/digits/studies/mad_branches"
    terms = {
        cell: json.loads((runs / cell / "seed0/metrics.json").read_text())["history"][-1]
        for cell in ("ema_only", "generator_only")
    }
    # Each cell trained the student on one source only: the other source's KD term is 0.
    assert (
        terms["ema_only"]["loss/student/kd_generator"]
        == 0.0
        < terms["ema_only"]["loss/student/kd_ema"]
    )
    assert terms["generator_only"]["loss/student/kd_ema"] == 0.0
    assert terms["generator_only"]["loss/student/kd_generator"] > 0.0


def test_a_study_prints_the_papers_accuracy_for_a_variants_teacher(suite, tmp_path):
    """The noisy-teacher study's provenance gives each teacher's accuracy, and CuDFKD §5.4's
    94.07% for its own noisy teacher beside ours."""
    from dfkd.cli import main
    from tests.report_fixture import _run_metrics, _teacher_metrics

    study = suite.study("noisy_teacher")
    teachers = []
    for folder, acc1 in (("teacher", 95.1), ("teacher_variants/noisy/resnet34", 93.2)):
        path = tmp_path / folder / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_teacher_metrics("resnet34", acc1, "cifar10")))
        teachers.append(str(path))
    runs = []
    for cell, seed in itertools.product(study.cells, study.seeds):
        path = tmp_path / "studies/noisy_teacher" / cell / f"seed{seed}/metrics.json"
        path.parent.mkdir(parents=True)
        record = _run_metrics(study.pair, study.cells[cell].method, seed, "paper", 90.0, "cifar10")
        path.write_text(json.dumps(record))
        runs.append(str(path))
    out = tmp_path / "noisy_teacher"
    arguments = ["study-report", "--study", "noisy_teacher", "--studies",
                 str(REPOSITORY / "params/studies.yaml"), "--out", str(out)]  # fmt: skip
    assert main([*arguments, "--runs", *runs, "--teachers", *teachers]) == 0
    for extension in ("md", "tex", "html"):
        text = (tmp_path / f"noisy_teacher.{extension}").read_text()
        assert "resnet34 (trained): 95.10%" in text, extension
        assert "resnet34 (noisy): 93.20% (paper: 94.07%)" in text, extension
