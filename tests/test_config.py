"""Params files: strict loading, one clear line per problem, and the resolution of run configs."""

import shutil
from dataclasses import replace

import pytest
import yaml

import dfkd
from dfkd.cli import main
from dfkd.config import (
    config_hash,
    load_run_config,
    load_suite,
    load_teacher_config,
    read_yaml,
    save_config,
)
from dfkd.errors import ConfigError
from tests.support import REPOSITORY, method_names


@pytest.fixture
def params(tmp_path):
    """A writable copy of the real params: (params.yaml data, params dir)."""
    shutil.copytree(REPOSITORY / "params", tmp_path / "params")
    return read_yaml(REPOSITORY / "params.yaml"), tmp_path / "params"


def _edit_yaml(path, edit):
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def test_every_run_of_every_experiment_resolves(suite):
    for dataset, experiment in suite.params.experiments.items():
        runs = suite.runs(dataset)
        assert len(runs) == len(experiment.pairs) * len(experiment.methods) * len(experiment.seeds)
        for run in runs:
            config = suite.run_config(**run, teacher_checkpoint="teacher.pt")
            assert config.suite_version == dfkd.__version__
        for architecture in suite.teachers_of(dataset):
            suite.teacher_config(experiment.protocol, dataset, architecture)


def test_every_method_resolves_for_every_declared_override(suite):
    for name, method in suite.methods.items():
        for key in method.overrides:
            dataset, _, pair = key.partition("/")
            suite.method_settings(name, dataset, pair or "resnet34-resnet18")


def test_saved_configs_load_back_identically(suite, tmp_path):
    run = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 1, "t.pt")
    save_config(run, tmp_path / "run.yaml")
    assert load_run_config(tmp_path / "run.yaml") == run
    teacher = suite.teacher_config("paper", "cifar10", "resnet34")
    save_config(teacher, tmp_path / "teacher.yaml")
    assert load_teacher_config(tmp_path / "teacher.yaml") == teacher


def test_config_hash_changes_with_any_value(suite):
    run = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, "t.pt")
    assert config_hash(run) == config_hash(replace(run))
    assert config_hash(run) != config_hash(replace(run, seed=1))
    changed = replace(run, loop=replace(run.loop, batch_size=33))
    assert config_hash(run) != config_hash(changed)


def test_published_values_and_overrides_reach_the_run(suite):
    dfq = suite.run_config("paper", "cifar100", "resnet34", "resnet18", "dfq", 0, "t.pt")
    assert dfq.loop.student_optimizer.learning_rate == 0.05  # the R34->R18 CIFAR-100 script
    assert dfq.loop.epochs == 200 and dfq.loop.rounds_per_epoch == 40
    other = suite.run_config("paper", "cifar100", "wrn40_2", "wrn16_2", "dfq", 0, "t.pt")
    assert other.loop.student_optimizer.learning_rate == 0.1
    assert dfq.statistics.start_epoch == 80
    # CuDFKD's DAFL baseline as its code runs it: one round of 1 + 400 steps, its Adam betas.
    dafl = suite.run_config("paper", "cifar10", "resnet34", "resnet18", "dafl", 0, "t.pt")
    loop = dafl.loop
    assert (loop.epochs, loop.batch_size, loop.rounds_per_epoch) == (250, 1024, 1)
    assert (loop.generator_steps_per_round, loop.student_steps_per_round) == (1, 400)
    assert dafl.hyperparameters["generator_betas"] == [0.9, 0.99]
    cmi_code = suite.run_config("paper", "cifar10", "wrn40_2", "wrn16_1", "dafl", 0, "t.pt")
    assert (cmi_code.loop.rounds_per_epoch, cmi_code.loop.student_steps_per_round) == (80, 5)
    assert cmi_code.hyperparameters["generator_betas"] == [0.5, 0.999]


def test_protocols_shorten_schedules_and_scale_milestones(suite):
    teacher = suite.teacher_config("quick", "cifar10", "resnet34")
    assert teacher.recipe.epochs == 20
    assert teacher.recipe.optimizer.milestones == (10, 15)  # 80/160 and 120/160 of 20 epochs
    assert suite.teacher_config("paper", "cifar10", "resnet34").recipe.optimizer.milestones == (
        80,
        120,
    )
    tiny = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, "t.pt")
    assert (tiny.loop.epochs, tiny.loop.batch_size) == (10, 32)
    # The method's own round (1 generator step, 10 student steps) repeated to 200 student steps.
    assert (tiny.loop.rounds_per_epoch, tiny.loop.student_steps_per_round) == (20, 10)
    dafl = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dafl", 0, "t.pt")
    assert (dafl.loop.rounds_per_epoch, dafl.loop.student_steps_per_round) == (40, 5)
    # One long round per epoch (ADI: 400 student steps) keeps its one round, cut to 200 steps.
    adi = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "adi", 0, "t.pt")
    assert (adi.loop.rounds_per_epoch, adi.loop.student_steps_per_round) == (1, 200)
    published = suite.run_config("paper", "cifar10", "wrn40_2", "wrn16_1", "adi", 0, "t.pt")
    assert (published.loop.generator_steps_per_round, published.loop.student_steps_per_round) == (
        1000,
        400,
    )


def test_the_cudfkd_table_protocol_runs_every_method_for_that_paper_s_budget(suite):
    experiments = {
        name: replace(experiment, protocol="cudfkd_table")
        for name, experiment in suite.params.experiments.items()
    }
    table = replace(suite, params=replace(suite.params, experiments=experiments))
    for dataset, epochs in (("cifar10", 250), ("cifar100", 300)):
        for method in ("dafl", "adi", "dfq", "cmi", "cudfkd", "mad"):
            config = table.run_config(
                "cudfkd_table", dataset, "resnet34", "resnet18", method, 0, "t.pt"
            )
            assert config.loop.epochs == epochs
            paper = suite.run_config("paper", dataset, "resnet34", "resnet18", method, 0, "t.pt")
            assert config.loop.rounds_per_epoch == paper.loop.rounds_per_epoch
            assert config.loop.batch_size == paper.loop.batch_size
    mad = table.run_config("cudfkd_table", "cifar10", "resnet34", "resnet18", "mad", 0, "t.pt")
    assert mad.loop.student_optimizer.milestones == (83, 167)  # 100 and 200 of 300 epochs


@pytest.mark.parametrize(("rule", "expected"), [("linear", 0.1 / 8), ("sqrt", 0.1 / 8**0.5)])
def test_a_protocol_batch_scales_the_student_learning_rate_by_its_rule(suite, rule, expected):
    protocol = replace(suite.params.protocols["tiny"], learning_rate_scaling=rule)
    params = replace(suite.params, protocols={**suite.params.protocols, "tiny": protocol})
    run = replace(suite, params=params).run_config(
        "tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, "t.pt"
    )
    published = suite.run_config("paper", "cifar10", "resnet34", "resnet18", "dfq", 0, "t.pt")
    # DFQ's published batch is 256 at lr 0.1 (CMI scripts); the tiny protocol runs 32.
    assert (published.loop.batch_size, published.loop.student_optimizer.learning_rate) == (256, 0.1)
    assert run.loop.batch_size == 32
    assert run.loop.student_optimizer.learning_rate == pytest.approx(expected, rel=1e-12)
    assert run.hyperparameters["generator_learning_rate"] == 1e-3  # Adam is not scaled


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(extra=1), "params.yaml: extra: unknown key"),
        (lambda p: p["data"].pop("download"), "params.yaml: data.download: missing"),
        (lambda p: p["experiments"]["digits"].update(seeds="0"), "experiments.digits.seeds"),
        (
            lambda p: p["experiments"]["digits"].update(methods=["dafl", "nope"]),
            "unknown method 'nope'",
        ),
        (
            lambda p: p["experiments"]["digits"].update(pairs=["cnn_small-resnet99"]),
            "unknown student model 'resnet99'",
        ),
        (lambda p: p["experiments"]["digits"].update(seeds=[]), "seeds: must not be empty"),
        (lambda p: p["experiments"]["digits"].update(seeds=[1, 1]), "entries must be unique"),
        (lambda p: p["experiments"]["digits"].update(protocol="fast"), "unknown protocol 'fast'"),
        (
            lambda p: p["experiments"].update(imagenet21k=p["experiments"]["digits"]),
            "unknown dataset",
        ),
        (lambda p: p["protocols"]["tiny"].update(distill_epochs=-1), "expected a number > 0"),
        (lambda p: p["protocols"]["tiny"].update(deterministic="yes"), "expected true or false"),
        (
            lambda p: p["protocols"]["tiny"].update(learning_rate_scaling=None),
            "batch_size and learning_rate_scaling: set both",
        ),
        (
            lambda p: p["protocols"]["tiny"].update(learning_rate_scaling="cubic"),
            "learning_rate_scaling: got 'cubic'; allowed: 'linear', 'sqrt'",
        ),
        (
            lambda p: p["experiments"]["digits"].update(accuracy_threshold=120.0),
            "a percentage",
        ),
    ],
)
def test_params_yaml_problems_are_named(params, edit, message):
    data, params_dir = params
    edit(data)
    with pytest.raises(ConfigError, match=message):
        load_suite(data, params_dir)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("methods/dfq.yaml", lambda m: m["schedule"].update(epochs=0), "schedule.epochs: got 0"),
        (
            "methods/dfq.yaml",
            lambda m: m["hyperparameters"].update(bn_weight=1.0),
            "hyperparameters.bn_weight: unknown key",
        ),
        (
            "methods/dfq.yaml",
            lambda m: m["hyperparameters"].update(generator_betas=[0.5, 1.5]),
            "generator_betas",
        ),
        ("methods/dfq.yaml", lambda m: m.update(implementation="dfx"), "unknown method implem"),
        (
            "methods/dfq.yaml",
            lambda m: m["overrides"].update(mnist={"schedule": {"epochs": 3}}),
            "overrides.mnist",
        ),
        (
            "methods/dafl.yaml",
            lambda m: m["overrides"]["digits"]["hyperparameters"].update(latent_dim=-3),
            "latent_dim",
        ),
        (
            "methods/dafl_original.yaml",
            lambda m: m["schedule"]["student_optimizer"].update(milestones=[800, 3000]),
            "each must be < epochs",
        ),
        ("teachers.yaml", lambda t: t["digits"].update(batch_size=1.5), "expected an integer"),
        (
            "published.yaml",
            lambda p: p["results"]["cifar10"]["resnet34-resnet18"]["dfq"].update(source="blog"),
            "unknown source 'blog'",
        ),
        ("published.yaml", lambda p: p["sources"]["cmi"].update(rule="best"), "'final_epoch'"),
        (
            "published.yaml",
            lambda p: p.update(stability={"cifar10": {"resnet34-resnet18": {"cmi": {"mu": 82.4}}}}),
            "stability.cifar10.resnet34-resnet18.cmi.sigma2: missing",
        ),
        ("methods/dfq.yaml", lambda m: m.pop("display_name"), "display_name: missing"),
        (
            "published.yaml",
            lambda p: p["results"]["cifar10"]["resnet34-resnet18"]["dfq"].update(note=""),
            "dfq.note: expected a non-empty string",
        ),
        (
            "published.yaml",
            lambda p: p["stability"]["cifar10"]["resnet34-resnet18"]["cmi"].update(sigma2=-1),
            "stability.cifar10.resnet34-resnet18.cmi.sigma2",
        ),
        (
            "published.yaml",
            lambda p: p["stability"]["cifar10"]["resnet34-resnet18"]["adi"].update(source="x"),
            "stability.cifar10.resnet34-resnet18.adi.source: unknown source 'x'",
        ),
        (
            "published.yaml",
            lambda p: p["stability"].update(mnist=p["stability"]["cifar10"]),
            "stability.mnist.resnet34-resnet18: expected a known dataset",
        ),
        (
            "published.yaml",
            lambda p: p["method_teachers"].update(madd=p["method_teachers"]["mad"]),
            "method_teachers.madd: unknown method implementation",
        ),
        ("published.yaml", lambda p: p.update(extra={}), "optionally method_teachers"),
    ],
)
def test_params_dir_problems_name_file_key_and_value(params, file, edit, message):
    data, params_dir = params
    _edit_yaml(params_dir / file, edit)
    with pytest.raises(ConfigError, match=message) as error:
        load_suite(data, params_dir)
    assert str(params_dir / file) in str(error.value)


def test_invalid_yaml_names_the_line(params):
    data, params_dir = params
    (params_dir / "methods" / "dfq.yaml").write_text("schedule:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"dfq.yaml: not valid YAML \(line 3"):
        load_suite(data, params_dir)


def test_every_problem_is_reported_not_just_the_first(params):
    data, params_dir = params
    data["protocols"]["tiny"]["distill_epochs"] = 0
    data["data"]["download"] = "no"
    with pytest.raises(ConfigError) as error:
        load_suite(data, params_dir)
    assert len(str(error.value).splitlines()) == 2


def test_check_command(tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"  # a checkout without any released teacher downloaded
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in ("params.yaml", "params"):
        (elsewhere / name).symlink_to(REPOSITORY / name)
    assert main(["check", "digits"]) == 0
    experiment = read_yaml(REPOSITORY / "params.yaml")["experiments"]["digits"]
    runs = len(experiment["pairs"]) * len(experiment["methods"]) * len(experiment["seeds"])
    assert f"digits: protocol tiny, {runs} runs" in capsys.readouterr().out
    # Every experiment by default: ImageNet's needs torchvision's AlexNet, downloaded and pinned.
    assert main(["check"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: params.yaml: experiments.imagenet: its released alexnet is not downloaded: "
        "download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth so that "
        "checkpoints/torchvision/alexnet-owt-7be5be79.pth exists, then pin its SHA-256 in "
        'params/released_teachers.yaml (README, "Released teachers", steps 1-2)'
    ]
    monkeypatch.chdir(REPOSITORY)

    broken = read_yaml(REPOSITORY / "params.yaml")
    broken["experiments"]["digits"]["methods"] = ["dafl", "mad2"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(broken))
    assert main(["check", "--params", str(tmp_path / "params.yaml")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: params.yaml: experiments.digits.methods: unknown method 'mad2' (no "
        f"params/methods/mad2.yaml); have: {', '.join(method_names())}"
    ]
    assert "have: adi, cmi, cudfkd" in lines[0]


@pytest.mark.parametrize(
    ("dataset", "generator_steps", "pretraining_steps"),
    [("imagenet", 20, 200), ("places365", 10, 50), ("food101", 5, 50)],  # Tables 5-6 (I-1, I-2)
)
def test_mad_s_imagenet_scale_rows_train_an_adam_student(
    suite, dataset, generator_steps, pretraining_steps
):
    import torch

    from dfkd.optim import build_optimizer

    loop, hyperparameters = suite.method_settings("mad", dataset, "alexnet-alexnet")
    assert (loop.epochs, loop.rounds_per_epoch, loop.student_steps_per_round) == (6000, 1, 150)
    assert loop.generator_steps_per_round == generator_steps
    assert hyperparameters["generator_pretraining_steps"] == pretraining_steps
    assert hyperparameters["generator"] == "mad_sum"
    weights = [torch.nn.Parameter(torch.zeros(3))]
    optimizer, scheduler = build_optimizer(weights, loop.student_optimizer, loop.epochs)
    assert type(optimizer) is torch.optim.Adam
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (1e-4, 1e-4, (0.9, 0.999))
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 1e-4  # no lr decay (Table 6)
    with pytest.raises(ValueError, match="set momentum: 0"):
        replace(loop.student_optimizer, momentum=0.9)


def test_a_teacher_warm_up_ramps_linearly_then_follows_the_step_schedule(suite):
    import torch

    from dfkd.optim import build_optimizer

    recipe = suite.teachers["food101"]  # MAD Table 4: 5 warm-up epochs, x0.1 at 30 and 60
    assert (recipe.warmup_epochs, recipe.optimizer.milestones) == (5, (30, 60))

    def learning_rates(warmup: int) -> list[float]:
        weights = [torch.nn.Parameter(torch.zeros(1))]
        optimizer, scheduler = build_optimizer(weights, recipe.optimizer, 90, None, warmup)
        rates = []
        for _ in range(recipe.epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return rates

    warm, plain = learning_rates(5), learning_rates(0)
    assert warm[:5] == pytest.approx([0.02 * epoch / 5 for epoch in range(1, 6)], rel=1e-12)
    assert warm[5:] == pytest.approx(plain[5:], rel=1e-12)  # MultiStepLR's decays, unchanged
    assert plain[29:31] == pytest.approx([0.02, 0.002]) and plain[-1] == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="warm-up is for the multistep"):
        replace(suite.teachers["digits"], warmup_epochs=2,
                optimizer=replace(recipe.optimizer, schedule="cosine", milestones=()))  # fmt: skip


def test_every_problem_of_one_file_is_reported_not_only_the_first(params):
    data, params_dir = params
    data["experiments"]["digits"]["seeds"] = [0, 0]
    data["experiments"]["cifar10"]["methods"] = ["dfq", "dfq"]
    data["protocols"]["tiny"]["batch_size"] = None  # its learning_rate_scaling stays
    with pytest.raises(ConfigError) as error:
        load_suite(data, params_dir)
    assert str(error.value).splitlines() == [
        "params.yaml: experiments.digits: seeds: got [0, 0]; entries must be unique",
        "params.yaml: experiments.cifar10: methods: got ['dfq', 'dfq']; entries must be unique",
        "params.yaml: protocols.tiny: batch_size and learning_rate_scaling: set both (a protocol "
        "batch scales the student learning rate) or neither",
    ]


def test_published_cells_may_carry_a_note_and_stability_rows(params):
    """CuDFKD Table 4's stability and cost figures, and a note on one published cell."""
    data, params_dir = params
    row = {"mu": 82.4, "sigma2": 16.6, "best": 94.8, "memory_gb": 12.5, "hours": 13.3,
           "source": "cudfkd"}  # fmt: skip

    def edit(published):
        published["results"]["cifar10"]["vgg11-resnet18"]["cmi"]["note"] = "as the README"
        published["stability"] = {"cifar10": {"resnet34-resnet18": {"cmi": row}}}

    _edit_yaml(params_dir / "published.yaml", edit)
    published = load_suite(data, params_dir).published
    assert published["stability"]["cifar10"]["resnet34-resnet18"]["cmi"].memory_gb == 12.5
    cell = published["results"]["cifar10"]["vgg11-resnet18"]["cmi"]
    assert (cell.note, cell.acc1) == ("as the README", 91.13)
