"""The params files against transcriptions, made here from the sources and not from params/, of
CuDFKD Table 7 (with §5.1's epochs), MAD's supplement Tables 5-7, and the reference scripts'
command lines. A drifted value fails naming the table cell or the script's flag it came from.

The readings the suite documents are applied here explicitly: CuDFKD Table 7's rows "alpha" and
"d lambda / d tau" swapped and its alpha_oh the class entropy's weight (dfkd/methods/cudfkd.py);
MAD's flattened rows resolved as methods.md §3.6.6-3.6.7 does (I-1: n_G from the column printed
as the generator's momentum; I-2: gamma and pgs from the shifted Places365 and Food-101 cells;
blank cells inherit the row above); the scripts as their datafree_kd.py reads them.
"""

from __future__ import annotations

import pytest

# CuDFKD Table 7 ("Hyperparameter setting in the experiment"), columns CIFAR10, CIFAR100, Tiny
# ImageNet, each row as printed, then the suite's setting that holds it.
CUDFKD_COLUMNS = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "Tiny ImageNet": "tiny_imagenet"}
CUDFKD_TABLE7 = [
    ("Batch Size", (768, 768, 512), "schedule.batch_size"),
    ("Dim of z", (512, 512, 512), "latent_dim"),
    ("lr_G", (0.001, 0.001, 0.001), "generator_learning_rate"),
    ("lr_s", (0.1, 0.1, 0.1), "schedule.student_optimizer.learning_rate"),
    ("alpha_bn", (1, 1, 1), "bn_statistics_weight"),
    ("alpha_oh", (20, 20, 20), "class_entropy_weight"),  # the class-balancing term of §4.1
    ("k_begin", (0.25, 0.25, 0.33), "ramp_begin_fraction"),
    ("k_end", (0.75, 0.75, 0.67), "ramp_end_fraction"),
    ("alpha", (1e-4, 2e-5, 2e-5), "pace_growth_per_step"),  # read swapped with the next row
    ("d lambda / d tau", (0.5, 0.2, 0.2), "adversarial_slope"),
    ("lambda_0", (2.0, 1.0, 1.0), "pace_initial"),
    ("loss type", ("kl", "l1", "l1"), "student_loss_type"),
    ("T", (20, 5, 5), "student_temperature"),
    ("T", (20, 5, 5), "class_entropy_temperature"),  # the code's one --T sets both
]
CUDFKD_SECTION_5_1_EPOCHS = (250, 300, 300)  # "250 epochs in CIFAR10, and 300 epochs in ..."


def _setting(suite, method: str, dataset: str, pair: str, key: str):
    schedule, hyperparameters = suite.method_settings(method, dataset, pair)
    if not key.startswith("schedule."):
        return hyperparameters[key]
    value = schedule
    for part in key.split(".")[1:]:
        value = getattr(value, part)
    return value


def _same(actual, printed) -> bool:
    if isinstance(printed, (int, float)) and not isinstance(printed, bool):
        return isinstance(actual, (int, float)) and actual == pytest.approx(printed, rel=1e-9)
    if isinstance(printed, (list, tuple)):
        return list(actual) == list(printed)
    return actual == printed


def _check(cells) -> None:
    wrong = [
        f"{where}: {source} resolves {key} = {actual!r}, expected {printed!r}"
        for where, source, key, actual, printed in cells
        if not _same(actual, printed)
    ]
    assert not wrong, "\n".join(wrong)


def test_cudfkd_params_are_table_7(suite):
    cells = []
    for index, (column, dataset) in enumerate(CUDFKD_COLUMNS.items()):
        for row, printed, key in CUDFKD_TABLE7:
            actual = _setting(suite, "cudfkd", dataset, "resnet34-resnet18", key)
            where = f"CuDFKD Table 7, row '{row}', column {column}"
            cells.append((where, "params/methods/cudfkd.yaml", key, actual, printed[index]))
        epochs = _setting(suite, "cudfkd", dataset, "resnet34-resnet18", "schedule.epochs")
        where = f"CuDFKD §5.1, epochs on {column}"
        cells.append(
            (
                where,
                "params/methods/cudfkd.yaml",
                "epochs",
                epochs,
                CUDFKD_SECTION_5_1_EPOCHS[index],
            )
        )
    _check(cells)


# MAD supplement Tables 5 (optimizers), 6 (training settings) and 7 (loss coefficients), one row
# per dataset and architecture as the suite resolves the flattened print; "-" is None.
MAD_ROWS = {
    # (dataset, pair): (row label, Table 5, Table 6, Table 7)
    ("cifar10", "resnet34-resnet18"): "CIFAR10/100 ♡",
    ("cifar100", "resnet34-resnet18"): "CIFAR10/100 ♡",
    ("cifar10", "wrn40_2-wrn16_2"): "CIFAR10/100 ◇",
    ("cifar100", "wrn40_2-wrn16_2"): "CIFAR10/100 ◇",
    ("tiny_imagenet", "resnet34-resnet18"): "TinyImageNet ♡",
    ("imagenet", "alexnet-alexnet"): "ImageNet ♣",
    ("places365", "alexnet-alexnet"): "Places365 ♣",
    ("food101", "alexnet-alexnet"): "Food101 ♣",
}
_CIFAR_5 = {"opt_S": "SGD", "lr_S": 1e-2, "wd_S": 5e-4, "mo_S": 0.9, "n_S": 30,
            "lr_G": 1e-3, "wd_G": 5e-4, "n_G": 3}  # fmt: skip
_LARGE_5 = {"opt_S": "Adam", "lr_S": 1e-4, "wd_S": 1e-4, "mo_S": None, "n_S": 150,
            "lr_G": 1e-4, "wd_G": None}  # fmt: skip
MAD_TABLE5 = {
    "CIFAR10/100 ♡": _CIFAR_5,
    "CIFAR10/100 ◇": {**_CIFAR_5, "n_S": 60},
    "TinyImageNet ♡": {**_CIFAR_5, "n_S": 90},
    "ImageNet ♣": {**_LARGE_5, "n_G": 20},  # I-1
    "Places365 ♣": {**_LARGE_5, "n_G": 10},
    "Food101 ♣": {**_LARGE_5, "n_G": 5},
}
_CIFAR_6 = {"bs": 256, "ld": 0.1, "ldep": [100, 200], "ep": 300, "spe": 50, "d_z": 256,
            "alpha": 0.95, "cg": "No", "gamma": None, "pg": "No", "pgs": None, "delta": 20,
            "nu": 20}  # fmt: skip
_LARGE_6 = {"bs": 512, "ld": None, "ldep": None, "ep": 6000, "spe": 1, "d_z": 256,
            "alpha": 0.95, "cg": "Yes", "gamma": 1.1, "pg": "Yes", "pgs": 200, "delta": 20,
            "nu": 20}  # fmt: skip
MAD_TABLE6 = {
    "CIFAR10/100 ♡": _CIFAR_6,
    "CIFAR10/100 ◇": _CIFAR_6,
    "TinyImageNet ♡": {**_CIFAR_6, "cg": "-"},  # D-5: the sum generator
    "ImageNet ♣": _LARGE_6,
    "Places365 ♣": {**_LARGE_6, "pgs": 50},  # I-2
    "Food101 ♣": {**_LARGE_6, "pgs": 50},
}
_CIFAR_7 = {"lambda_0": 1.0, "lambda_1": 1.0, "zeta_0": 0.01, "lambda_2": 1.0, "lambda_3": 0.0,
            "lambda_4": 0.0, "lambda_5": 1.0, "zeta_1": 0.1, "zeta_2": 0.1}  # fmt: skip
_OTHER_7 = {**_CIFAR_7, "zeta_0": 0.1, "lambda_3": 0.1, "lambda_4": 0.0}
MAD_TABLE7 = {
    "CIFAR10/100 ♡": _CIFAR_7,
    "CIFAR10/100 ◇": _CIFAR_7,
    "TinyImageNet ♡": _OTHER_7,
    "ImageNet ♣": _OTHER_7,
    "Places365 ♣": _OTHER_7,
    "Food101 ♣": _OTHER_7,  # printed blank: Places365's
}
# Column -> the suite's setting, and how a printed value reads there.
MAD_COLUMNS = {
    "opt_S": ("schedule.student_optimizer.algorithm", str.lower),
    "lr_S": ("schedule.student_optimizer.learning_rate", None),
    "wd_S": ("schedule.student_optimizer.weight_decay", None),
    "mo_S": ("schedule.student_optimizer.momentum", lambda v: v or 0.0),  # Adam: none
    "n_S": ("schedule.student_steps_per_round", None),
    "lr_G": ("generator_learning_rate", None),
    "wd_G": ("generator_weight_decay", lambda v: v or 0.0),
    "n_G": ("schedule.generator_steps_per_round", None),
    "bs": ("schedule.batch_size", None),
    "ld": (
        "schedule.student_optimizer.schedule",
        lambda v: "constant" if v is None else "multistep",
    ),
    "ldep": ("schedule.student_optimizer.milestones", lambda v: v or []),
    "ep": ("schedule.epochs", None),
    "spe": ("schedule.rounds_per_epoch", None),
    "d_z": ("latent_dim", None),
    "alpha": ("ema_momentum", None),
    "cg": ("generator", lambda v: "mad_uncond" if v == "No" else "mad_sum"),
    "gamma": ("norm_reg_scale", lambda v: 1.1 if v is None else v),  # unused where printed "-"
    "pgs": ("generator_pretraining_steps", lambda v: v or 0),
    "delta": ("logit_bound", None),
    "nu": ("generator_logit_bound", None),
    "lambda_0": ("generator_sample_weight", None),
    "lambda_1": ("ema_sample_weight", None),
    "zeta_0": ("student_logit_bound_weight", None),
    "lambda_2": ("adversarial_weight", None),
    "lambda_3": ("nll_weight", None),
    "lambda_4": ("norm_reg_weight", None),
    "lambda_5": ("bn_statistics_weight", None),
    "zeta_1": ("teacher_logit_bound_weight", None),
    "zeta_2": ("generator_logit_bound_weight", None),
}


def test_mad_params_are_tables_5_to_7(suite):
    cells = []
    for (dataset, pair), row in MAD_ROWS.items():
        for table, values in (("5", MAD_TABLE5), ("6", MAD_TABLE6), ("7", MAD_TABLE7)):
            for column, printed in values[row].items():
                if column == "pg":  # read through pgs
                    continue
                key, reading = MAD_COLUMNS[column]
                expected = reading(printed) if reading else printed
                actual = _setting(suite, "mad", dataset, pair, key)
                where = f"MAD Table {table}, row '{row}', column {column} ({dataset}/{pair})"
                cells.append((where, "params/methods/mad.yaml", key, actual, expected))
        if row.startswith("CIFAR"):  # Table 6's ld: the decay factor of the multistep schedule
            gamma = _setting(suite, "mad", dataset, pair, "schedule.student_optimizer.gamma")
            where = f"MAD Table 6, row '{row}', column ld ({dataset}/{pair})"
            cells.append((where, "params/methods/mad.yaml", "gamma", gamma, 0.1))
    _check(cells)


# The reference scripts, their flags as printed (paths, GPUs, tags and seeds left out).
CMI = "zju-vipa/CMI 9e79fa9"
DATAFREE = "ljrprocc/DataFree bf3096b"
_DEEPINV = (
    "--lr 0.1 --kd_steps 400 --ep_steps 400 --g_steps 1000 --lr_g 0.1 --adv 1 --bn 10 --oh 1 --T 20"
)
_SCRATCH_CMI = (
    "--lr 0.1 --kd_steps 400 --ep_steps 400 --g_steps 200 --lr_g 1e-3 --adv 0.5 --bn 1.0 "
    "--oh 1.0 --cr 0.8 --cr_T 0.1 --T 20"
)
_CUDFKD = (
    "--lr 0.1 --kd_steps 5 --kd_steps_interval 10 --g_steps_interval 1 --ep_steps 400 "
    "--g_steps 1 --lr_g 0.001 --lmda_ent -20 --oh 1 --bn 1 --adv_type kl --curr_option curr_log"
)
SCRIPTS = [
    # (repository, script, params file, dataset, pair, flags)
    (CMI, "scripts/dafl/dafl_cifar10_wrn402_wrn161.sh", "dafl", "cifar10", "wrn40_2-wrn16_1",
     "--batch_size 256 --lr 0.1 --epochs 200 --kd_steps 5 --ep_steps 400 --g_steps 1 "
     "--lr_g 1e-3 --T 20 --oh 1 --act 0.001 --balance 20"),
    (CMI, "scripts/deepinv/deepinv_cifar10_wrn402_wrn161.sh", "adi", "cifar10",
     "wrn40_2-wrn16_1", f"--batch_size 256 --epochs 200 {_DEEPINV}"),
    (CMI, "scripts/dfq/dfq_cifar10_wrn402_wrn161.sh", "dfq", "cifar10", "wrn40_2-wrn16_1",
     "--batch_size 256 --lr 0.1 --epochs 200 --kd_steps 10 --ep_steps 400 --g_steps 1 "
     "--lr_g 1e-3 --adv 1 --T 20 --bn 1 --oh 1 --balance 20"),
    (CMI, "scripts/dfq/dfq_cifar10_res34_res18.sh", "dfq", "cifar100", "resnet34-resnet18",
     "--batch_size 256 --lr 0.05 --epochs 200 --kd_steps 10 --ep_steps 400 --g_steps 1 "
     "--lr_g 1e-3 --adv 1 --T 1 --bn 1 --oh 1 --balance 20"),  # runs --dataset cifar100
    (CMI, "scripts/cmi/scratch_cmi_cifar10_wrn402_wrn161.sh", "cmi", "cifar10",
     "wrn40_2-wrn16_1", f"--batch_size 128 --synthesis_batch_size 256 {_SCRATCH_CMI}"),
    (DATAFREE, "scripts/dafl/dafl_cifar10_wrn402_wrn161.sh", "dafl", "cifar10",
     "resnet34-resnet18",  # runs --teacher resnet34 --student resnet18
     "--batch_size 1024 --lr 0.1 --epochs 250 --kd_steps 5 --ep_steps 400 --g_steps 1 "
     "--lr_g 1e-3 --T 20 --oh 1 --act 0.001 --balance 20"),
    (DATAFREE, "scripts/deepinv/deepinv_cifar10_resnet34_resnet18.sh", "adi", "cifar10",
     "resnet34-resnet18", f"--batch_size 1024 --epochs 200 {_DEEPINV}"),
    (DATAFREE, "scripts/deepinv/deepinv_cifar10_vgg11_resnet18.sh", "adi", "cifar10",
     "vgg11-resnet18", f"--batch_size 256 --epochs 250 {_DEEPINV}"),
    (DATAFREE, "scripts/deepinv/deepinv_cifar10_wrn402_wrn162.sh", "adi", "cifar10",
     "wrn40_2-wrn16_2", f"--batch_size 256 --epochs 250 {_DEEPINV}"),
    (DATAFREE, "scripts/deepinv/deepinv_cifar10_wrn402_wrn401.sh", "adi", "cifar10",
     "wrn40_2-wrn40_1", f"--batch_size 256 --epochs 250 {_DEEPINV}"),
    (DATAFREE, "scripts/deepinv/deepinv_cifar100_resnet34_resnet18.sh", "adi", "cifar100",
     "wrn40_2-wrn16_2", f"--batch_size 1024 --epochs 300 {_DEEPINV}"),  # runs wrn40_2->wrn16_2
    (DATAFREE, "scripts/cmi/scratch_cmi_cifar10_resnet34_resnet18.sh", "cmi", "cifar10",
     "resnet34-resnet18", f"--batch_size 256 --synthesis_batch_size 512 {_SCRATCH_CMI}"),
    (DATAFREE, "scripts/cmi/scratch_cmi_cifar10_vgg11_resnet18.sh", "cmi", "cifar10",
     "vgg11-resnet18", f"--batch_size 256 --synthesis_batch_size 512 {_SCRATCH_CMI}"),
    (DATAFREE, "scripts/cmi/scratch_cmi_cifar10_wrn402_wrn162.sh", "cmi", "cifar10",
     "wrn40_2-wrn16_2", f"--batch_size 256 --synthesis_batch_size 512 {_SCRATCH_CMI}"),
    (DATAFREE, "scripts/cmi/scratch_cmi_cifar10_wrn402_wrn401.sh", "cmi", "cifar10",
     "wrn40_2-wrn40_1", f"--batch_size 256 --synthesis_batch_size 512 {_SCRATCH_CMI}"),
    (DATAFREE, "scripts/cmi/cmi_timagenet.sh", "cmi", "tiny_imagenet", "resnet34-resnet18",
     "--batch_size 256 --lr 0.1 --kd_steps 400 --ep_steps 400 --g_steps 200 --epochs 300 "
     "--lr_g 1e-3 --adv 0.5 --bn 1.0 --oh 1.0 --cr 0.8 --cr_T 0.2 --T 2 --world_size 2"),
    (DATAFREE, "scripts/cudfkd/cudfkd_cifar10_resnet34_resnet18.sh", "cudfkd_reference",
     "cifar10", "resnet34-resnet18",
     f"--batch_size 512 --epochs 250 {_CUDFKD} --begin_fraction 0.25 --end_fraction 0.75 "
     "--grad_adv 0.5 --adv 0. --T 20 --lambda_0 2.0 --loss l1"),
    (DATAFREE, "scripts/cudfkd/cudfkd_cifar10_wrn402_wrn161.sh", "cudfkd_reference", "cifar10",
     "wrn40_2-wrn16_1",
     f"--batch_size 1024 --epochs 250 {_CUDFKD} --adv 0.5 --begin_fraction 0.25 "
     "--end_fraction 0.75 --grad_adv 0.05 --T 20 --lambda_0 2. --loss kl"),
    (DATAFREE, "scripts/cudfkd/cudfkd_cifar100_resnet34_resnet18.sh", "cudfkd_reference",
     "cifar100", "resnet34-resnet18",
     f"--batch_size 768 --epochs 400 {_CUDFKD} --begin_fraction 0.2 --end_fraction 0.8 "
     "--grad_adv 0.35 --adv 0. --T 5 --lambda_0 1 --loss l1"),
    (DATAFREE, "scripts/cudfkd/cudfkd_cifar100_wrn402_wrn161.sh", "cudfkd_reference",
     "cifar100", "wrn40_2-wrn40_1",  # runs --student wrn40_1
     f"--batch_size 1024 --epochs 500 {_CUDFKD} --adv 0. --T 2 --begin_fraction 0.2 "
     "--end_fraction 0.75 --grad_adv 0.12 --lambda_0 1 --loss kl"),
    (DATAFREE, "scripts/cudfkd/cudfkd_timagenet.sh", "cudfkd_reference", "tiny_imagenet",
     "resnet34-resnet18",
     f"--batch_size 512 --epochs 400 {_CUDFKD} --begin_fraction 0.2 --end_fraction 0.75 "
     "--grad_adv 0.15 --adv 1. --depth 3 --T 5 --lambda_0 1 --loss l1 --world_size 2"),
]  # fmt: skip


def _flags(text: str) -> dict[str, str]:
    words = text.split()
    return {words[i][2:]: words[i + 1] for i in range(0, len(words), 2)}


def _expected(repository: str, method: str, dataset: str, pair: str, text: str) -> dict:
    """What datafree_kd.py runs for these flags, as suite settings, by flag."""
    f = {
        key: float(value) if key != "loss" and key != "adv_type" and key != "curr_option" else value
        for key, value in _flags(text).items()
    }
    processes = int(f.get("world_size", 1))
    # datafree_kd.py's prepare_model divides --batch_size by the GPU count for the student and
    # the teacher, then the synthesis batch is set, then once more for a generator.
    synthesis_batch = f["batch_size"] / processes**2 * processes
    student_batch = f["batch_size"] / processes**3 * processes if processes > 1 else f["batch_size"]
    e: dict[str, tuple[str, object]] = {
        "--batch_size": ("schedule.batch_size", student_batch),
        "--lr": ("schedule.student_optimizer.learning_rate", f["lr"]),
        "--epochs": ("schedule.epochs", f.get("epochs", 200)),  # its default: 200
    }
    if repository == DATAFREE or method.startswith("cudfkd"):
        # ljrprocc's loop: ep_steps // kd_steps_interval[0] rounds of kd_steps_interval[0]
        # student steps (default 400; --kd_steps is not read), g_steps (or its interval) each.
        student_steps = f.get("kd_steps_interval", 400)
        generator_steps = f["g_steps_interval"] if method.startswith("cudfkd") else f["g_steps"]
    else:
        student_steps, generator_steps = f["kd_steps"], f["g_steps"]
    e["--ep_steps"] = ("schedule.rounds_per_epoch", f["ep_steps"] // student_steps)
    e["--kd_steps"] = ("schedule.student_steps_per_round", student_steps)
    e["--g_steps"] = ("schedule.generator_steps_per_round", generator_steps)
    betas = {  # the synthesizers' Adam betas (their synthesis/*.py, not a flag)
        "adi": ("pixel_betas", [0.5, 0.99]),
        "cmi": ("generator_betas", [0.5, 0.999]),
        "dafl": ("generator_betas", [0.9, 0.99] if repository == DATAFREE else [0.5, 0.999]),
        "cudfkd": ("generator_betas", [0.9, 0.99]),
    }
    betas["dfq"] = betas["dafl"]  # generative.py serves both
    e["(Adam betas)"] = betas[method.removesuffix("_reference")]
    if method == "adi":
        e |= {
            "--lr_g": ("pixel_learning_rate", f["lr_g"]),
            "--T": ("student_temperature", f["T"]),
            "--adv": ("adversarial_weight", f["adv"]),
            "--bn": ("bn_statistics_weight", f["bn"]),
            "--oh": ("one_hot_weight", f["oh"]),
            "(best_inputs aliases the last iterate)": ("kept_batch", "last"),
        }
    elif method == "cmi":
        e |= {
            "--lr_g": ("generator_learning_rate", f["lr_g"]),
            "--T": ("student_temperature", f["T"]),
            "--adv": ("adversarial_weight", f["adv"]),
            "--bn": ("bn_statistics_weight", f["bn"]),
            "--oh": ("one_hot_weight", f["oh"]),
            "--cr": ("contrastive_weight", f["cr"]),
            "--cr_T": ("contrastive_temperature", f["cr_T"]),
            "--synthesis_batch_size": (
                "synthesis_batch_size",
                f.get("synthesis_batch_size", synthesis_batch),
            ),
            "(resnet34 teachers: only use blocks)": (
                "feature_layers",
                "stages" if pair.startswith("resnet34") else "batch_norm",
            ),
        }
    elif method in ("dafl", "dfq"):  # KLDiv() at T=1 replaces the criterion: --T is not read
        e |= {
            "--lr_g": ("generator_learning_rate", f["lr_g"]),
            "(KLDiv() for dafl, dfq)": ("student_temperature", 1.0),
            "--oh": ("one_hot_weight", f["oh"]),
        }
        if method == "dafl":
            e |= {
                "--balance": ("information_entropy_weight", f["balance"]),
                "--act": ("activation_weight", f["act"]),
            }
        else:
            e |= {
                "--balance": ("class_balance_weight", f["balance"]),
                "--adv": ("adversarial_weight", f["adv"]),
                "--bn": ("bn_statistics_weight", f["bn"]),
            }
    else:  # cudfkd
        e |= {
            "--lr_g": ("generator_learning_rate", f["lr_g"]),
            "--T": ("student_temperature", f["T"]),
            "--T (entropy)": ("class_entropy_temperature", f["T"]),
            "--lmda_ent": ("class_entropy_weight", -f["lmda_ent"]),
            "--oh": ("one_hot_weight", f["oh"]),
            "--bn": ("bn_statistics_weight", f["bn"]),
            "--adv": ("adversarial_start", f["adv"]),
            "--grad_adv": ("adversarial_slope", f["grad_adv"]),
            "--begin_fraction": ("ramp_begin_fraction", f["begin_fraction"]),
            "--end_fraction": ("ramp_end_fraction", f["end_fraction"]),
            "--lambda_0": ("pace_initial", f["lambda_0"]),
            "--loss": ("student_loss_type", f["loss"]),
            "--adv_type": ("adversarial_divergence", "masked_kl"),
            "--curr_option": ("self_paced", "log"),
            "(alpha: 1e-4 for cifar10, else 2e-5)": (
                "pace_growth_per_step",
                1e-4 if dataset == "cifar10" else 2e-5,
            ),
            "(nz: 512 for CIFAR, else 1024)": (
                "latent_dim",
                512 if dataset.startswith("cifar") else 1024,
            ),
            "--depth": ("generator", "large_depth3" if f.get("depth") == 3 else "large"),
            "--batch_size (synthesis)": (
                "synthesis_batch_size",
                None if processes == 1 else synthesis_batch,
            ),
        }
    return e


@pytest.mark.parametrize(
    ("repository", "script", "method", "dataset", "pair", "flags"),
    SCRIPTS,
    ids=[f"{s[0].split()[0]}:{s[1]}" for s in SCRIPTS],
)
def test_params_run_what_the_reference_scripts_ran(
    suite, repository, script, method, dataset, pair, flags
):
    cells = [
        (f"{repository} {script} {flag} ({dataset}/{pair})", f"params/methods/{method}.yaml", key,
         _setting(suite, method, dataset, pair, key), value)
        for flag, (key, value) in _expected(repository, method, dataset, pair, flags).items()
    ]  # fmt: skip
    _check(cells)


# CuDFKD Table 4 (ResNet-34 -> ResNet-18), as printed: mu, sigma^2, best Acc@1, GPU memory,
# time; "-" is None. params/published.yaml `stability` holds it for the tables.
CUDFKD_TABLE4 = {
    "CIFAR10": """
        DAFL 62.6 17.1 92.0 6.45G 6.10h
        DFAD[13] 86.1 12.3 93.3 - -
        ADI[43] 87.2 13.9 93.3 7.85G 25.2h
        CMI[14] 82.4 16.6 94.8 12.5G 13.3h
        MB-DFKD[5] 83.3 16.4 92.4 - -
        PRE-DFKD[4] 87.4 10.3 94.1 - -
        CuDFKD(Ours) 94.1 2.88 95.0 6.84G 5.48h""",
    "CIFAR100": """
        DAFL 52.5 12.8 74.5 6.45G 7.09h
        DFAD[13] 54.9 12.9 67.7 - -
        ADI[43] 51.3 18.2 61.3 7.85G 30.4h
        CMI[14] 55.2 24.1 77.0 12.5G 22.3h
        MB-DFKD[5] 64.4 18.3 75.4 - -
        PRE-DFKD[4] 70.2 11.1 77.1 - -
        CuDFKD(Ours) 71.7 4.37 75.2 6.84G 7.50h""",
}
TABLE4_METHODS = {
    "DAFL": "dafl", "DFAD[13]": "dfad", "ADI[43]": "adi", "CMI[14]": "cmi",
    "MB-DFKD[5]": "mb_dfkd", "PRE-DFKD[4]": "pre_dfkd", "CuDFKD(Ours)": "cudfkd",
}  # fmt: skip


def test_published_stability_is_cudfkd_table_4(suite):
    cells = []
    for column, text in CUDFKD_TABLE4.items():
        dataset = column.lower()
        for line in text.strip().splitlines():
            name, mu, sigma2, best, memory, hours = line.split()
            row = suite.published["stability"][dataset]["resnet34-resnet18"][TABLE4_METHODS[name]]
            printed = {
                "mu": float(mu), "sigma2": float(sigma2), "best": float(best),
                "memory_gb": None if memory == "-" else float(memory.rstrip("G")),
                "hours": None if hours == "-" else float(hours.rstrip("h")),
            }  # fmt: skip
            for key, value in printed.items():
                where = f"CuDFKD Table 4, {column}, row '{name}', column {key}"
                cells.append((where, "params/published.yaml", key, getattr(row, key), value))
    _check(cells)


# DAFL's own code (huawei-noah/Data-Efficient-Model-Compression 5e8f4e4): the README's commands
# (`--act` read as the script's `--a`) and what DAFL-train.py fixes: 120 iterations per epoch,
# SGD momentum 0.9, wd 5e-4, lr x0.1 at epochs 800 and 1600, log10 entropy.
DAFL_README = {
    "cifar10": "--n_epochs 2000 --batch_size 1024 --lr_G 0.02 --lr_S 0.1 --latent_dim 1000 "
    "--oh 0.05 --ie 5 --act 0.01",
    "cifar100": "--n_epochs 2000 --batch_size 1024 --lr_G 0.02 --lr_S 0.1 --latent_dim 1000 "
    "--oh 0.5 --ie 20 --act 0.1",
}
DAFL_FLAGS = {
    "n_epochs": "schedule.epochs", "batch_size": "schedule.batch_size",
    "lr_G": "generator_learning_rate", "lr_S": "schedule.student_optimizer.learning_rate",
    "latent_dim": "latent_dim", "oh": "one_hot_weight", "ie": "information_entropy_weight",
    "act": "activation_weight",
}  # fmt: skip
DAFL_TRAIN_PY = {
    "(range(120))": ("schedule.rounds_per_epoch", 120),
    "(SGD momentum)": ("schedule.student_optimizer.momentum", 0.9),
    "(SGD weight_decay)": ("schedule.student_optimizer.weight_decay", 5e-4),
    "(adjust_learning_rate)": ("schedule.student_optimizer.milestones", [800, 1600]),
    "(torch.log10)": ("entropy_log_base", 10.0),
    "(kdloss(net(gen_imgs.detach()), outputs_T.detach()): the same batch)":
        ("student_batch", "generator_batch"),
}  # fmt: skip


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_dafl_original_runs_the_dafl_readmes_command(suite, dataset):
    source = "huawei-noah/Data-Efficient-Model-Compression 5e8f4e4 DAFL"
    expected = {
        f"README --{flag}": (DAFL_FLAGS[flag], float(value))
        for flag, value in _flags(DAFL_README[dataset]).items()
    } | {f"DAFL-train.py {what}": value for what, value in DAFL_TRAIN_PY.items()}
    cells = [
        (f"{source} {what} ({dataset})", "params/methods/dafl_original.yaml", key,
         _setting(suite, "dafl_original", dataset, "resnet34-resnet18", key), value)
        for what, (key, value) in expected.items()
    ]  # fmt: skip
    _check(cells)
