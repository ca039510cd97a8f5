"""Per-class label embeddings for methods whose generator is conditioned on text (NAYER).

NAYER (Tran et al., CVPR 2024; tmtuan1307/NAYER c6bedcd label_embedding/label_embedding.py)
feeds its generator the CLIP ViT-B/32 text embedding of "a image of {label}" of each class,
computed once and shipped with the code as pickles (`<dataset>_le.pickle`): a pickled float16
tensor (classes, 512) that its script loads with `pickle.load` and casts to float32. The suite
reads such a file from where the user put it, after checking its SHA-256 against the pin in
params/label_embeddings.yaml, as it does with released teachers (dfkd/released.py); the
unpickling admits only what a pickled tensor needs, so a file cannot run code.

`random_orthogonal` is the named stand-in that needs no download: one row per class, the rows
orthogonal with length sqrt(512) (entries of unit scale), from a fixed seed. NAYER normalises the
embeddings with a BatchNorm1d before its first layer, so their scale does not matter; their
geometry does (CLIP's rows of a CIFAR-10 label set have cosine similarities near 0.87, the
stand-in's 0), and every report that ran it names it.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dfkd.errors import CheckpointError, ConfigError
from dfkd.workflow import sha256_of

if TYPE_CHECKING:  # the config package imports the methods, whose contract imports this
    from dfkd.config.settings import LabelEmbeddingsConfig
    from dfkd.config.suite import Suite

STAND_IN = "random_orthogonal"
STAND_IN_SOURCE = "fixed random orthogonal vectors (seed 0, 512 dimensions), no download"
DIMENSION = 512  # CLIP ViT-B/32's text embedding


def random_orthogonal(num_classes: int, dimension: int = DIMENSION, seed: int = 0) -> Tensor:
    """(num_classes, dimension) float32: orthogonal rows of length sqrt(dimension).

    The Q factor of a Gaussian matrix drawn from its own generator (the global RNG untouched),
    with the signs fixed by R's diagonal, so the rows are a function of the seed alone.
    """
    if num_classes > dimension:
        raise ValueError(
            f"{num_classes} classes cannot have orthogonal {dimension}-dimensional embeddings"
        )
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dimension, num_classes, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)  # q: (dimension, num_classes), orthonormal columns
    q = q * torch.sign(torch.diagonal(r))
    return (q.T * dimension**0.5).float()


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a pickled torch tensor (the legacy storage format included) and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda data: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a pickled tensor")


def read_embedding_file(path: Path, num_classes: int) -> Tensor:
    """(num_classes, D) float32 from a pickled tensor (NAYER's `<dataset>_le.pickle`)."""
    try:
        with path.open("rb") as handle:
            loaded = _TensorUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        message = f"{path} is not a pickled tensor of label embeddings ({reason})"
        raise CheckpointError(message) from None
    if not isinstance(loaded, Tensor) or loaded.dim() != 2 or len(loaded) != num_classes:
        shape = tuple(loaded.shape) if isinstance(loaded, Tensor) else type(loaded).__name__
        raise CheckpointError(
            f"{path} holds {shape}; expected a tensor (classes, dimensions) with {num_classes} "
            "rows, one per class of the dataset"
        )
    return loaded.detach().float().contiguous()


def load_label_embeddings(config: LabelEmbeddingsConfig, num_classes: int) -> Tensor:
    """The embeddings a run's config names: the stand-in, or its file once its pin matches."""
    if config.file is None:
        return random_orthogonal(num_classes)
    path = Path(config.file)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: label embeddings not found; download them (params/label_embeddings.yaml "
            f"names where from) or choose label_embeddings: {STAND_IN}"
        )
    digest = sha256_of(path)
    if config.sha256 is None:
        raise CheckpointError(
            f"{path} has SHA-256 {digest}; compare it with your download and pin it in "
            "params/label_embeddings.yaml"
        )
    if digest != config.sha256:
        raise CheckpointError(
            f"{path} has SHA-256 {digest}, not the {config.sha256} pinned in "
            "params/label_embeddings.yaml; download the file again or correct the pin"
        )
    return read_embedding_file(path, num_classes)


def embeddings_resolver(
    config: LabelEmbeddingsConfig | None, num_classes: int
) -> Callable[[str], Tensor]:
    """What a method context's `label_embeddings` does: the run's embeddings for their name.

    Without a run config (a method built in a test or a benchmark) only the stand-in exists.
    """

    def resolve(name: str) -> Tensor:
        if config is not None and config.name == name:
            return load_label_embeddings(config, num_classes)
        if name == STAND_IN:
            return random_orthogonal(num_classes)
        raise CheckpointError(
            f"label embeddings '{name}' need their file, which only a run's config names "
            "(params/label_embeddings.yaml)"
        )

    return resolve


def check_label_embeddings(suite: Suite) -> list[str]:
    """Every run of an experiment whose method names label embeddings finds them."""
    problems = []
    for dataset, experiment in suite.params.experiments.items():
        for method in experiment.methods:
            for pair in experiment.pairs:
                _, hyperparameters = suite.method_settings(method, dataset, pair)
                try:
                    suite.label_embeddings(hyperparameters, dataset)
                except ConfigError as error:
                    where = suite.params_dir / "methods" / f"{method}.yaml"
                    problems.append(f"{where}: {pair} in experiment '{dataset}': {error}")
    return problems
