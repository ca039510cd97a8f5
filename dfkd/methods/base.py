"""The contract between the training loop and a data-free KD method.

Vocabulary (see README "Glossary"): a *generator step* updates whatever synthesises data
(generator weights, latent codes or pixels); a *student step* is one distillation update; a
*round* is some generator steps then some student steps; an *epoch* is some rounds, then
evaluation.

A method owns its synthesis side: its generator(s), their optimizers and any method state
(EMA copies, memory banks, curricula). It returns named, already weighted loss terms; the loop
logs them, owns the student's optimizer and schedule, evaluates, checkpoints and times. A method
never reads or writes files, logs, evaluates, picks devices or precision, or branches on dataset
or model names. The loop never branches on method names: a new method is one file, one params
file and one import line in dfkd/methods/__init__.py.

The loop guarantees: the teacher is frozen and in eval mode; during generator steps the student
is in eval mode with frozen parameters (as in the CMI code base, so synthesis batches never touch
its BN statistics); during student steps it is in train mode and trainable.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from dfkd.data import DatasetInfo, augment, denormalize, normalize, normalized_bounds
from dfkd.generators import Generator, build_generator
from dfkd.label_embeddings import embeddings_resolver
from dfkd.losses import kl_divergence
from dfkd.models.base import Classifier
from dfkd.schema import positive

LossTerms = dict[str, Tensor]
"""Scalar loss terms keyed by a stable name (`one_hot`, `bn_statistics`, ...), already weighted."""


@dataclass(frozen=True)
class MethodContext:
    """What the loop hands a method: the networks and the data geometry."""

    teacher: Classifier
    student: Classifier
    num_classes: int
    image_size: int
    batch_size: int  # student batch; also the synthesis batch unless a method says otherwise
    epochs: int  # of the run: a curriculum over the run's course (CuDFKD) needs its length
    normalize: Callable[[Tensor], Tensor]  # pixels in [0, 1] -> the teacher's input space
    device: torch.device
    memory_format: torch.memory_format  # of the method's own networks (dfkd.runtime)
    # The dataset's train augmentation on pixels (random crop, and a flip where allowed).
    augment: Callable[[Tensor], Tensor]
    denormalize: Callable[[Tensor], Tensor]  # the teacher's input space -> pixels
    # (low, high) of normalised pixels, each (1, 3, 1, 1): where pixels 0 and 1 land.
    normalized_bounds: tuple[Tensor, Tensor]
    mirror_keeps_label: bool  # may a method's own augmentation flip images?
    # Keyword arguments for the method's own optimizers (dfkd/compute.py: fused, foreach).
    optimizer_options: Mapping[str, bool]
    # The loop's synthesis-only first epochs (LoopConfig.warmup_epochs): a method whose objective
    # changes after them (NAYER's and Fast-DFKD's adversarial term) counts its epochs from 1 in
    # `on_epoch_end`.
    warmup_epochs: int
    # Name -> (num_classes, D) per-class label embeddings (dfkd/label_embeddings.py), for a method
    # whose config names them in a field `label_embeddings`; the run reads and verifies the file.
    label_embeddings: Callable[[str], Tensor]


def method_context(
    info: DatasetInfo,
    teacher: Classifier,
    student: Classifier,
    batch_size: int,
    epochs: int,
    device: torch.device,
    memory_format: torch.memory_format,
    optimizer_options: Mapping[str, bool] | None = None,
    warmup_epochs: int = 0,
    label_embeddings: Callable[[str], Tensor] | None = None,
) -> MethodContext:
    """The context of a run on dataset `info`: its geometry, normalisation and augmentation.

    Without `label_embeddings` only the stand-in (dfkd.label_embeddings.STAND_IN) resolves.
    """
    return MethodContext(
        teacher=teacher,
        student=student,
        num_classes=info.num_classes,
        image_size=info.image_size,
        batch_size=batch_size,
        epochs=epochs,
        normalize=functools.partial(normalize, info=info),
        device=device,
        memory_format=memory_format,
        augment=functools.partial(augment, info=info),
        denormalize=functools.partial(denormalize, info=info),
        normalized_bounds=normalized_bounds(info, device),
        mirror_keeps_label=info.train_augmentation == "crop_flip",
        optimizer_options=dict(optimizer_options or {}),
        warmup_epochs=warmup_epochs,
        label_embeddings=label_embeddings or embeddings_resolver(None, info.num_classes),
    )


@dataclass(frozen=True)
class MethodConfig:
    """Hyperparameters every method has."""

    # Named options that choose between the paper's and the reference code's behaviour; every
    # report states their values beside the method's name.
    reported_settings: ClassVar[tuple[str, ...]] = ()

    student_temperature: float = field(metadata=positive)  # KD temperature of the student loss


class DFKDMethod(ABC):
    """Base class: plain KD for the student step; subclasses implement the synthesis side."""

    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig, context: MethodContext) -> None:
        self.config = config
        self.context = context

    @property
    def teacher(self) -> Classifier:
        return self.context.teacher

    @property
    def student(self) -> Classifier:
        return self.context.student

    @abstractmethod
    def generator_step(self) -> LossTerms:
        """One synthesis update; returns the detached terms of its loss.

        Its loss goes through `backpropagate`, between the optimizers' zero_grad and step.
        """

    def backpropagate(self, terms: LossTerms) -> LossTerms:
        """Backpropagates the sum of a generator step's weighted terms; returns them detached.

        The one way a synthesis loss reaches its parameters, so that the tests can follow each
        term's gradient to what it trains (tests/test_gradient_flow.py).
        """
        torch.stack(list(terms.values())).sum().backward()
        return {name: value.detach() for name, value in terms.items()}

    @abstractmethod
    def sample(self, batch_size: int) -> Tensor:
        """A synthetic batch (N, 3, H, W) in the teacher's input space, without gradient."""

    def student_loss(self) -> LossTerms:
        """Loss of one student step; the loop backpropagates the sum and steps the optimizer.

        Default: KL(teacher || student) at `student_temperature` (times T^2) on a fresh sample.
        """
        images = self.sample(self.context.batch_size)
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        student_logits = self.student(images)
        return {
            "kd": kl_divergence(student_logits, teacher_logits, self.config.student_temperature)
        }

    def pretrain(self) -> None:  # noqa: B027 - an optional hook
        """Called once before a run's first round (never again on resume), the student frozen.

        Where a method warms up its synthesis before distilling (MAD's generator pre-training);
        the first checkpoint holds its result.
        """

    def finish_synthesis(self) -> None:  # noqa: B027 - an optional hook
        """Called once per round, after its generator steps and before its student steps.

        Where a round's synthesis ends in something the student phase uses: the inversion
        methods commit the batch they kept to their pool here; an EMA copy would be updated here.
        """

    def on_epoch_end(self, epoch: int) -> None:  # noqa: B027 - an optional hook
        """Called after each epoch's training (1-based epoch), before evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the method exactly (not the teacher or the student)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


@dataclass(frozen=True)
class GenerativeMethodConfig(MethodConfig):
    """Hyperparameters of a method with one persistent generator."""

    generator: str  # registry name in dfkd.generators
    latent_dim: int = field(metadata=positive)
    generator_base_channels: int = field(metadata=positive)  # "ngf"; 64 in the papers
    generator_learning_rate: float = field(metadata=positive)  # Adam
    generator_betas: tuple[float, float]

    def __post_init__(self) -> None:
        if not all(0 <= beta < 1 for beta in self.generator_betas):
            raise ValueError(f"generator_betas: got {list(self.generator_betas)}; each in [0, 1)")


class GenerativeMethod(DFKDMethod):
    """A method that trains one persistent generator with Adam (DAFL, DFQ, CuDFKD, MAD).

    The generator is trained in train mode (batch statistics) and sampled for the student in
    eval mode (running statistics), as the CMI code base does since commit acbbea6.
    """

    config: GenerativeMethodConfig

    def __init__(self, config: GenerativeMethodConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.generator: Generator = build_generator(
            config.generator, config.latent_dim, config.generator_base_channels, context.image_size
        ).to(context.device, memory_format=context.memory_format)
        self.generator_optimizer = torch.optim.Adam(
            self.generator.parameters(),
            lr=config.generator_learning_rate,
            betas=config.generator_betas,
            **context.optimizer_options,
        )

    def _latent(self, batch_size: int) -> Tensor:
        return torch.randn(batch_size, self.config.latent_dim, device=self.context.device)

    def _to_teacher_space(self, generated: Tensor) -> Tensor:
        return generated if self.generator.outputs_normalized else self.context.normalize(generated)

    def generate(self, batch_size: int) -> Tensor:
        """A batch from the generator in train mode, with gradient, in the teacher's input space."""
        self.generator.train()
        return self._to_teacher_space(self.generator(self._latent(batch_size)))

    @torch.no_grad()
    def sample(self, batch_size: int) -> Tensor:
        self.generator.eval()
        return self._to_teacher_space(self.generator(self._latent(batch_size)))

    def optimize_generator(self, terms: LossTerms) -> LossTerms:
        """Backpropagates the sum of `terms`, steps the generator's Adam, returns them detached."""
        self.generator_optimizer.zero_grad(set_to_none=True)
        detached = self.backpropagate(terms)
        self.generator_optimizer.step()
        return detached

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
