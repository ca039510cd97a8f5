"""MAD: Momentum Adversarial Distillation (Do et al., NeurIPS 2022, arXiv 2209.10359), from its
supplement (Eqs. 10-11, Tables 5-9, §B.3, App. C); no code was published.

A generator G, its exponential moving average G~ and, for a class-conditional G, class
embeddings E. Each round: n_G steps of G and E on Eq. 11, the EMA update, then n_S student steps
on Eq. 10, where the student learns from fresh samples of both G and G~:

    L_S = lambda_0 [KD(x) + zeta_0 hinge(S(x), delta)]
        + lambda_1 [KD(x~) + zeta_0 hinge(S(x~), delta)]
    L_G = -lambda_2 KD(x) + lambda_3 NLL(T(x), y) + lambda_4 NormReg(e_y)
          + zeta_1 hinge(T(x), delta) + zeta_2 hinge(u, nu) + lambda_5 BN-statistics

with x = sigmoid(u), u = G_ig(z, e_y), hinge(v, b) = mean of max(|v| - b, 0). The BN-statistics
term needs BatchNorm layers in the teacher: with AlexNet (ImageNet, Places365, Food101), which
has none, it is absent whatever lambda_5 (Table 7 prints 1.0 there too; methods.md §3.6.7, I-5).

The supplement leaves these open (methods.md §3.6.10); each is a config value, the recommended
reading by default:
- D-1 KD = KL(p_T || p_S) at `student_temperature` 1, as ABM's (which MAD extends), and its
  batch mean: the per-sample KL averaged over the batch, the expectation Eq. 10 writes. ABM's
  code takes torch's default element mean instead (kl_div's "mean" divides by N x C), i.e. the
  same divergence divided by the number of classes; the supplement does not say which MAD used.
- D-2 `ema_placement: after_generator_steps`: one EMA update per round, after the n_G steps
  (`every_generator_step` the alternative); G~ starts as a copy of G; `ema_buffers: average`
  applies the EMA rule to the BN running statistics too (`copy` takes G's).
  theta~ <- alpha theta~ + (1 - alpha) theta: alpha weights the old average.
- D-3 a fresh z (and y) for every student step, for G and G~ each.
- D-4 `sampling_mode: eval`: G and G~ are sampled with running statistics, as the CMI-family
  methods of this suite (so D-2's buffer rule matters); `train` uses batch statistics (and, as
  any train-mode forward pass, moves the sampled generator's running statistics). The
  student is frozen in eval mode during generator steps (the loop's contract).
- D-5 Tiny-ImageNet: the `sum` generator with lambda_3 0.1 and lambda_4 0 (Table 6 prints "-").
- D-6 NormReg = mean over the batch of max(||e_y|| - gamma sqrt(d_e), 0); lambda_4 = 0 as Table
  7 prints on every row, so gamma only acts in a variant with lambda_4 > 0.
- D-7 every hinge: mean over its entries, then over the batch.
- D-8 `generator_pretraining_steps` (Table 6 pgs: 0 on the CIFAR and Tiny-ImageNet rows, 200 on
  ImageNet, 50 on Places365 and Food101) steps of G and E before the first round, on
  `pretraining_objective: without_adversarial`, Eq. 11 without -lambda_2 KD (the supplement
  states no objective; an untrained student gives the adversarial term nothing to push
  against), or `full` Eq. 11; then G~ <- a copy of G, and G's Adam goes on with its state.
- D-9 sigmoid(u) is normalised with the dataset's mean and std before T and S.
- D-10 BatchNorm2d's printed second argument is the momentum (dfkd/generators/mad.py).
- D-11 the generator's Adam keeps its lr (no decay) and PyTorch's betas (0.9, 0.999);
  `generator_weight_decay` is Table 5's wd_G (Adam's L2 form).
For an unconditional G (Table 6 cg "No": CIFAR), e_y is a fixed zero vector and lambda_3 =
lambda_4 = 0 (§B.3); class labels are drawn uniformly over the K classes.
"""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfkd.hooks import BatchNormInputs, BatchNormStatistics
from dfkd.losses import batch_norm_statistics_loss, kl_divergence
from dfkd.methods.base import GenerativeMethod, GenerativeMethodConfig, LossTerms, MethodContext
from dfkd.schema import non_negative, positive


def hinge(values: Tensor, bound: float) -> Tensor:
    """mean of max(|v| - bound, 0) over every entry (D-7): keeps v inside [-bound, bound]."""
    # (...) -> ()
    return (values.abs() - bound).clamp_min(0).mean()


def norm_regularizer(embeddings: Tensor, scale: float) -> Tensor:
    """mean_i max(||e_i||_2 - scale sqrt(d_e), 0) (App. C's bound xi = gamma sqrt(d_e), D-6)."""
    # (N, d_e) -> ()
    bound = scale * math.sqrt(embeddings.shape[1])
    return (torch.linalg.vector_norm(embeddings, dim=1) - bound).clamp_min(0).mean()


@torch.no_grad()
def ema_update(average: nn.Module, current: nn.Module, momentum: float, buffers: str) -> None:
    """theta~ <- momentum theta~ + (1 - momentum) theta for parameters; BN buffers by the same
    rule (`average`; the batch counter is copied) or copied (`copy`)."""
    for mean, value in zip(average.parameters(), current.parameters(), strict=True):
        mean.lerp_(value, 1 - momentum)
    for mean, value in zip(average.buffers(), current.buffers(), strict=True):
        if buffers == "average" and mean.is_floating_point():
            mean.lerp_(value, 1 - momentum)
        else:
            mean.copy_(value)


@dataclass(frozen=True)
class MADConfig(GenerativeMethodConfig):
    reported_settings = ("ema_placement", "ema_buffers", "sampling_mode", "pretraining_objective")

    generator_weight_decay: float = field(metadata=non_negative)  # Table 5 wd_G
    ema_momentum: float = field(metadata=non_negative)  # alpha, Table 6
    ema_placement: Literal["after_generator_steps", "every_generator_step"]  # D-2
    ema_buffers: Literal["average", "copy"]  # D-2
    sampling_mode: Literal["eval", "train"]  # D-4
    generator_sample_weight: float = field(metadata=non_negative)  # lambda_0
    ema_sample_weight: float = field(metadata=non_negative)  # lambda_1
    student_logit_bound_weight: float = field(metadata=non_negative)  # zeta_0
    logit_bound: float = field(metadata=positive)  # delta
    adversarial_weight: float = field(metadata=non_negative)  # lambda_2
    nll_weight: float = field(metadata=non_negative)  # lambda_3
    norm_reg_weight: float = field(metadata=non_negative)  # lambda_4
    norm_reg_scale: float = field(metadata=positive)  # gamma
    bn_statistics_weight: float = field(metadata=non_negative)  # lambda_5
    teacher_logit_bound_weight: float = field(metadata=non_negative)  # zeta_1
    generator_logit_bound_weight: float = field(metadata=non_negative)  # zeta_2
    generator_logit_bound: float = field(metadata=positive)  # nu
    generator_pretraining_steps: int = field(metadata=non_negative)  # Table 6 pgs (D-8)
    pretraining_objective: Literal["without_adversarial", "full"]  # D-8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ema_momentum < 1:
            raise ValueError(f"ema_momentum: got {self.ema_momentum}; expected [0, 1)")
        if self.generator == "mad_uncond" and (self.nll_weight or self.norm_reg_weight):
            raise ValueError(
                "nll_weight and norm_reg_weight: an unconditional generator has no class "
                "embeddings (§B.3 sets both to 0); use mad_sum or mad_cat"
            )


class MAD(GenerativeMethod):
    config_class = MADConfig
    config: MADConfig

    def __init__(self, config: MADConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.conditional = self.generator.conditioning != "uncond"
        embedding_dim = self.generator.embedding_dim
        # E is shared by G and G~ (Fig. 1); fixed at zero for an unconditional G.
        self.embeddings = nn.Embedding(context.num_classes, embedding_dim).to(context.device)
        if not self.conditional:
            nn.init.zeros_(self.embeddings.weight)
        self.embeddings.requires_grad_(self.conditional)
        trained = [*self.generator.parameters()]
        if self.conditional:
            trained += [*self.embeddings.parameters()]
        self.generator_optimizer = torch.optim.Adam(
            trained,
            lr=config.generator_learning_rate,
            betas=config.generator_betas,
            weight_decay=config.generator_weight_decay,
            **context.optimizer_options,
        )
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False)
        has_batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in self.teacher.modules())
        self.teacher_batch_norms = BatchNormInputs(self.teacher) if has_batch_norm else None

    def _draw(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """z ~ N(0, I), y ~ Uniform{0..K-1} and e_y (zeros for an unconditional G)."""
        z = self._latent(batch_size)
        y = torch.randint(self.context.num_classes, (batch_size,), device=self.context.device)
        return z, y, self.embeddings(y)

    def _generator_terms(self, adversarial: bool) -> LossTerms:
        """The terms of Eq. 11 on a fresh batch from G (without -lambda_2 KD unless adversarial)."""
        config = self.config
        z, y, e = self._draw(self.context.batch_size)
        self.generator.train()
        u = self.generator.logits(z, e if self.conditional else None)
        images = self.context.normalize(torch.sigmoid(u))
        with self._recording_batch_norms() as statistics:
            teacher_logits = self.teacher(images)
        terms = {}
        if adversarial:
            student_logits = self.student(images)
            terms["adversarial"] = -config.adversarial_weight * kl_divergence(
                student_logits, teacher_logits, config.student_temperature
            )
        terms["teacher_logit_bound"] = config.teacher_logit_bound_weight * hinge(
            teacher_logits, config.logit_bound
        )
        terms["generator_logit_bound"] = config.generator_logit_bound_weight * hinge(
            u, config.generator_logit_bound
        )
        if statistics is not None:
            terms["bn_statistics"] = config.bn_statistics_weight * batch_norm_statistics_loss(
                statistics.means,
                statistics.variances,
                statistics.running_means,
                statistics.running_variances,
            )
        if self.conditional:
            terms["nll"] = config.nll_weight * F.cross_entropy(teacher_logits, y)
            terms["norm_reg"] = config.norm_reg_weight * norm_regularizer(e, config.norm_reg_scale)
        return terms

    def _recording_batch_norms(self) -> AbstractContextManager[BatchNormStatistics | None]:
        if self.teacher_batch_norms is None:  # a BN-free teacher (AlexNet, I-5)
            return nullcontext()
        return self.teacher_batch_norms.recording()

    def pretrain(self) -> None:
        adversarial = self.config.pretraining_objective == "full"
        for _ in range(self.config.generator_pretraining_steps):
            self.optimize_generator(self._generator_terms(adversarial))
        self.ema_generator.load_state_dict(self.generator.state_dict())  # G~ starts at G (D-2)

    def generator_step(self) -> LossTerms:
        terms = self.optimize_generator(self._generator_terms(adversarial=True))
        if self.config.ema_placement == "every_generator_step":
            self.update_ema()
        return terms

    def update_ema(self) -> None:
        ema_update(
            self.ema_generator, self.generator, self.config.ema_momentum, self.config.ema_buffers
        )

    def finish_synthesis(self) -> None:
        if self.config.ema_placement == "after_generator_steps":
            self.update_ema()

    @torch.no_grad()
    def _sample_from(self, generator: nn.Module, batch_size: int) -> Tensor:
        generator.train(self.config.sampling_mode == "train")
        z, _, e = self._draw(batch_size)
        return self.context.normalize(generator(z, e if self.conditional else None))

    def sample(self, batch_size: int) -> Tensor:
        return self._sample_from(self.generator, batch_size)

    def student_loss(self) -> LossTerms:
        config = self.config
        terms = {}
        for name, generator, weight in (
            ("generator", self.generator, config.generator_sample_weight),
            ("ema", self.ema_generator, config.ema_sample_weight),
        ):
            images = self._sample_from(generator, self.context.batch_size)
            with torch.no_grad():
                teacher_logits = self.teacher(images)
            student_logits = self.student(images)
            terms[f"kd_{name}"] = weight * kl_divergence(
                student_logits, teacher_logits, config.student_temperature
            )
            terms[f"logit_bound_{name}"] = (
                weight
                * config.student_logit_bound_weight
                * hinge(student_logits, config.logit_bound)
            )
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "ema_generator": self.ema_generator.state_dict(),
            "embeddings": self.embeddings.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ema_generator.load_state_dict(state["ema_generator"])
        self.embeddings.load_state_dict(state["embeddings"])
