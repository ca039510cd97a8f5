"""NAYER's and Fast-DFKD's params files against transcriptions, made here from their sources and
not from params/: the command lines of tmtuan1307/NAYER c6bedcd scripts/nayer_{100,200,300}.sh
and zju-vipa/Fast-Datafree 0dcecbc scripts/fast_cifar.sh, the defaults of each one's
datafree_kd.py for the flags a line leaves out, the values their synthesis code fixes, and the
Fast-Datafree README's result tables. A drifted value fails naming the script line and flag.

Both scripts print their CIFAR-100 lines with "modify --dataset (and nothing else) to apply to
CIFAR10"; NAYER's also prints CIFAR-10 lines (30 generator steps where CIFAR-100 has 40).
"""

from __future__ import annotations

import pytest

from tests.test_transcriptions import _check, _flags, _setting

NAYER = "tmtuan1307/NAYER c6bedcd"
FAST = "zju-vipa/Fast-Datafree 0dcecbc"

# The suite's name of each script line's teacher/student (its `# c10w402w161` comments, or the
# `--teacher/--student` flags with datafree_kd.py's defaults wrn40_2/wrn16_1 where left out).
PAIRS = {
    "r34r18": "resnet34-resnet18",
    "w402w161": "wrn40_2-wrn16_1",
    "w402w162": "wrn40_2-wrn16_2",
    "w402w401": "wrn40_2-wrn40_1",
    "vgg11r18": "vgg11-resnet18",
}

# nayer_N.sh, its CIFAR lines (one per pair, identical but for the pair and the dataset) and its
# Tiny-ImageNet line `tir34r18`, less --gpu, --dataset, --method, the pair, paths and tags.
NAYER_SCRIPTS = {"nayer": (100, 120), "nayer_200": (200, 220), "nayer_300": (300, 320)}
NAYER_CIFAR = (
    "--batch_size 512 --synthesis_batch_size 400 --lr 0.2 --warmup 20 --epochs {epochs} "
    "--lr_g 4e-3 --adv 1.33 --bn 10.0 --oh 0.5 --g_steps {g_steps} --g_life 10 --g_loops 2 "
    "--gwp_loops 10"
)
NAYER_CIFAR_G_STEPS = {"cifar10": 30, "cifar100": 40}
NAYER_TINY = (
    "--batch_size 256 --synthesis_batch_size 200 --lr 0.1 --warmup 20 --epochs {epochs} "
    "--lr_g 4e-3 --adv 1.33 --bn 10.0 --oh 0.5 --g_steps 60 --g_life 10 --g_loops 4 "
    "--gwp_loops 20 --kd_steps 1000 --ep_steps 1000"
)
# NAYER's datafree_kd.py defaults for the flags its scripts leave out.
NAYER_DEFAULTS = {"kd_steps": "400", "bn_mmt": "0.9", "le_emb_size": "1000", "eta_min": "2e-4",
                  "T": "20", "wd": "1e-4"}  # fmt: skip


def _cosine_length(schedule) -> int:
    """The epochs the student's cosine anneals over: a set length, else the epochs after warm-up
    (dfkd/distill.py hands build_optimizer `training_epochs`)."""
    optimizer = schedule.student_optimizer
    return optimizer.cosine_epochs or schedule.epochs - schedule.warmup_epochs


def _nayer_expected(dataset: str, text: str) -> dict:
    f = {key: float(value) for key, value in (NAYER_DEFAULTS | _flags(text)).items()}
    return {
        "--batch_size": ("schedule.batch_size", f["batch_size"]),
        "--synthesis_batch_size": ("synthesis_batch_size", f["synthesis_batch_size"]),
        "--lr": ("schedule.student_optimizer.learning_rate", f["lr"]),
        "--epochs": ("schedule.epochs", f["epochs"]),
        "--warmup": ("schedule.warmup_epochs", f["warmup"]),
        "--gwp_loops": ("schedule.warmup_syntheses_per_epoch", f["gwp_loops"]),
        "--g_loops": ("schedule.syntheses_per_round", f["g_loops"]),
        "--g_steps": ("schedule.generator_steps_per_round", f["g_steps"]),
        "--kd_steps": ("schedule.student_steps_per_round", f["kd_steps"]),
        # main_worker: one synthesize() and one train() per epoch; --ep_steps is never read.
        "(one round per epoch)": ("schedule.rounds_per_epoch", 1),
        "--lr_g": ("generator_learning_rate", f["lr_g"]),
        "--adv": ("adversarial_weight", f["adv"]),
        "--bn": ("bn_statistics_weight", f["bn"]),
        "--oh": ("one_hot_weight", f["oh"]),
        "--bn_mmt": ("bn_statistics_momentum", f["bn_mmt"]),
        "--g_life": ("generator_lifetime_epochs", f["g_life"]),
        "--le_emb_size": ("noisy_layer_width", f["le_emb_size"]),
        "--T": ("student_temperature", f["T"]),
        "--eta_min": ("schedule.student_optimizer.minimum_learning_rate", f["eta_min"]),
        "--wd": ("schedule.student_optimizer.weight_decay", f["wd"]),
        "(SGD momentum=0.9)": ("schedule.student_optimizer.momentum", 0.9),
        "(SGD, cosine)": ("schedule.student_optimizer.schedule", "cosine"),
        "(nayer.py: Adam betas)": ("generator_betas", [0.5, 0.999]),
        "(NLGenerator(ngf=64))": ("generator_base_channels", 64),
        "(label_embedding/<dataset>_le.pickle)": ("label_embeddings", "clip_vit_b32"),
        "(nayer.py: no flip on tiny_imagenet)": ("synthesis_flip", dataset != "tiny_imagenet"),
        "(nayer.py: student.train() after each synthesis of an epoch)": (
            "later_syntheses_student_mode",
            "train",
        ),
    }


NAYER_LINES = [
    (method, script, dataset, pair, NAYER_CIFAR.format(epochs=epochs, g_steps=g_steps))
    for method, (script, epochs) in NAYER_SCRIPTS.items()
    for dataset, g_steps in NAYER_CIFAR_G_STEPS.items()
    for pair in PAIRS.values()
] + [
    (method, script, "tiny_imagenet", "resnet34-resnet18", NAYER_TINY.format(epochs=epochs))
    for method, (script, epochs) in NAYER_SCRIPTS.items()
]


@pytest.mark.parametrize(
    ("method", "script", "dataset", "pair", "flags"),
    NAYER_LINES,
    ids=[f"nayer_{line[1]}.sh:{line[2]}/{line[3]}" for line in NAYER_LINES],
)
def test_nayer_params_run_its_scripts(suite, method, script, dataset, pair, flags):
    where = f"{NAYER} scripts/nayer_{script}.sh"
    cells = [
        (f"{where} {flag} ({dataset}/{pair})", f"params/methods/{method}.yaml", key,
         _setting(suite, method, dataset, pair, key), value)
        for flag, (key, value) in _nayer_expected(dataset, flags).items()
    ]  # fmt: skip
    schedule, _ = suite.method_settings(method, dataset, pair)
    epochs, warmup = float(_flags(flags)["epochs"]), float(_flags(flags)["warmup"])
    cells.append(
        (f"{where} CosineAnnealingLR(epochs - warmup) ({dataset}/{pair})",
         f"params/methods/{method}.yaml", "cosine length", _cosine_length(schedule),
         epochs - warmup)
    )  # fmt: skip
    _check(cells)


# fast_cifar.sh: the flags every line shares, then per variant (g_steps, lr_z, lr_g) and per
# pair (adv, oh; the WRN lines leave --teacher/--student out or name the student alone).
FAST_COMMON = (
    "--batch_size 256 --lr 0.2 --kd_steps 400 --ep_steps 400 --bn 10.0 --act 0 --balance 0 "
    "--T 20 --seed 0 --bn_mmt 0.9 --warmup 20 --epochs 220 --is_maml 1 --reset_l0 1 --reset_bn 0"
)
FAST_VARIANTS = {
    "fast2": "--g_steps 2 --lr_z 0.015 --lr_g 5e-3",
    "fast5": "--g_steps 5 --lr_z 0.01 --lr_g 3e-3",
    "fast10": "--g_steps 10 --lr_z 0.01 --lr_g 2e-3",
}
FAST_PAIRS = {
    "resnet34-resnet18": "--adv 1.33 --oh 0.5",  # --teacher resnet34 --student resnet18
    "vgg11-resnet18": "--adv 1.0 --oh 0.5",  # --teacher vgg11 --student resnet18
    "wrn40_2-wrn16_1": "--adv 1.1 --oh 0.4",  # no --teacher/--student: the defaults
    "wrn40_2-wrn40_1": "--adv 1.1 --oh 0.4",  # --student wrn40_1
    "wrn40_2-wrn16_2": "--adv 1.1 --oh 0.4",  # --student wrn16_2
}


def _fast_expected(text: str) -> dict:
    f = {key: float(value) for key, value in _flags(text).items()}
    return {
        "--batch_size": ("schedule.batch_size", f["batch_size"]),
        # --synthesis_batch_size left out: None, and then the batch size.
        "(--synthesis_batch_size None)": ("synthesis_batch_size", None),
        "--lr": ("schedule.student_optimizer.learning_rate", f["lr"]),
        "--epochs": ("schedule.epochs", f["epochs"]),
        "--warmup": ("schedule.warmup_epochs", f["warmup"]),
        # ep_steps // kd_steps synthesize() calls per epoch, each followed by train() after the
        # warm-up: the warm-up's syntheses per epoch too.
        "--ep_steps": ("schedule.rounds_per_epoch", f["ep_steps"] // f["kd_steps"]),
        "--ep_steps (warm-up)": (
            "schedule.warmup_syntheses_per_epoch",
            f["ep_steps"] // f["kd_steps"],
        ),
        "(one synthesis per synthesize())": ("schedule.syntheses_per_round", 1),
        "--kd_steps": ("schedule.student_steps_per_round", f["kd_steps"]),
        "--g_steps": ("schedule.generator_steps_per_round", f["g_steps"]),
        "--lr_g": ("generator_learning_rate", f["lr_g"]),
        "--lr_z": ("latent_learning_rate", f["lr_z"]),
        "(meta-Adam lr = lr_g * iterations)": ("meta_learning_rate", f["lr_g"] * f["g_steps"]),
        "--adv": ("adversarial_weight", f["adv"]),
        "--bn": ("bn_statistics_weight", f["bn"]),
        "--oh": ("one_hot_weight", f["oh"]),
        "--bn_mmt": ("bn_statistics_momentum", f["bn_mmt"]),
        "--T": ("student_temperature", f["T"]),
        "--reset_l0 1 (at ep == 120 + warmup)": ("first_layer_reset_epoch", 120 + f["warmup"]),
        "(CosineAnnealingLR(..., eta_min=2e-4))": (
            "schedule.student_optimizer.minimum_learning_rate",
            2e-4,
        ),
        "(--wd default 1e-4)": ("schedule.student_optimizer.weight_decay", 1e-4),
        "(SGD momentum=0.9)": ("schedule.student_optimizer.momentum", 0.9),
        "(Generator(nz=256, ngf=64))": ("latent_dim", 256),
        "(Generator(ngf=64))": ("generator_base_channels", 64),
        "(CMI's Generator)": ("generator", "cmi"),
        "(fast_meta.py: both Adams' betas)": ("generator_betas", [0.5, 0.999]),
        "(fast_meta.py: RandomHorizontalFlip)": ("synthesis_flip", True),
    }


FAST_LINES = [
    (method, dataset, pair, f"{FAST_COMMON} {variant} {weights}")
    for method, variant in FAST_VARIANTS.items()
    for dataset in ("cifar10", "cifar100")
    for pair, weights in FAST_PAIRS.items()
]


@pytest.mark.parametrize(
    ("method", "dataset", "pair", "flags"),
    FAST_LINES,
    ids=[f"{line[0]}:{line[1]}/{line[2]}" for line in FAST_LINES],
)
def test_fast_params_run_its_script(suite, method, dataset, pair, flags):
    where = f"{FAST} scripts/fast_cifar.sh"
    cells = [
        (f"{where} {flag} ({dataset}/{pair})", f"params/methods/{method}.yaml", key,
         _setting(suite, method, dataset, pair, key), value)
        for flag, (key, value) in _fast_expected(flags).items()
    ]  # fmt: skip
    schedule, _ = suite.method_settings(method, dataset, pair)
    # datafree_kd.py: CosineAnnealingLR(optimizer, 200, ...) whatever --epochs; the suite's
    # default length (the epochs after warm-up) is 200 for every line.
    cells.append(
        (f"{where} CosineAnnealingLR(optimizer, 200) ({dataset}/{pair})",
         f"params/methods/{method}.yaml", "cosine length", _cosine_length(schedule), 200)
    )  # fmt: skip
    _check(cells)


# The Fast-Datafree README's CIFAR-10 and CIFAR-100 tables, rows Fast-2/5/10, columns ResNet-34
# ResNet-18, VGG-11 ResNet-18, WRN40-2 WRN16-1, WRN40-2 WRN40-1, WRN40-2 WRN16-2, as printed.
FAST_README = {
    "cifar10": """
        Fast-2 92.62 (0.06h) 84.67 (0.03h) 88.36 (0.03h) 89.56 (0.03h) 89.68 (0.03h)
        Fast-5 93.63 (0.14h) 89.94 (0.08h) 88.90 (0.08h) 92.04 (0.09h) 91.96 (0.08h)
        Fast-10 94.05 (0.28h) 90.53 (0.15h) 89.29 (0.15h) 92.51 (0.17h) 92.45 (0.17h)""",
    "cifar100": """
        Fast-2 69.76 (0.06h) 62.83 (0.03h) 41.77 (0.03h) 53.15 (0.04h) 57.08 (0.04h)
        Fast-5 72.82 (0.14h) 65.28 (0.08h) 52.90 (0.07h) 61.80 (0.09h) 63.83 (0.08h)
        Fast-10 74.34 (0.27h) 67.44 (0.16h) 54.02 (0.16h) 63.91 (0.17h) 65.12 (0.17h)""",
}
README_COLUMNS = ["resnet34-resnet18", "vgg11-resnet18", "wrn40_2-wrn16_1", "wrn40_2-wrn40_1",
                  "wrn40_2-wrn16_2"]  # fmt: skip


def test_published_fast_numbers_are_the_readme_tables(suite):
    cells = []
    for dataset, text in FAST_README.items():
        for line in text.strip().splitlines():
            name, *values = line.split()
            method = name.lower().replace("-", "")
            for pair, accuracy in zip(README_COLUMNS, values[::2], strict=True):
                row = suite.published["results"][dataset][pair][method]
                where = f"{FAST} README, {dataset} row {name}, column {pair}"
                cells.append((where, "params/published.yaml", "acc1", row.acc1, float(accuracy)))
                cells.append((where, "params/published.yaml", "source", row.source, "fast_readme"))
    _check(cells)


def test_each_variant_is_named_as_its_release_names_it(suite):
    names = {
        method: suite.methods[method].display_name for method in (*NAYER_SCRIPTS, *FAST_VARIANTS)
    }
    assert names == {
        "nayer": "NAYER", "nayer_200": "NAYER-200", "nayer_300": "NAYER-300",
        "fast2": "Fast-2", "fast5": "Fast-5", "fast10": "Fast-10",
    }  # fmt: skip
