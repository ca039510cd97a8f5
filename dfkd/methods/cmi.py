"""CMI: Contrastive Model Inversion (Fang et al., "Contrastive Model Inversion for Data-Free
Knowledge Distillation", IJCAI 2021, arXiv 2105.08584), from scratch, as its code runs it.

zju-vipa/CMI 9e79fa9 datafree/synthesis/contrastive.py and datafree_kd.py (ljrprocc/DataFree
bf3096b, which produced CuDFKD's CMI numbers, runs the same code); methods.md §3.4. Each round:

1. the generator is re-initialised (conv and linear weights N(0, 0.02), biases 0, BN weights
   N(1, 0.02) and biases 0; BN running statistics kept), latent codes z are drawn with gradient,
   targets sorted uniform, and one Adam (1e-3, betas (0.5, 0.999)) optimises generator and z;
2. each step renders x = G(z) and two views of it: the global view (the dataset's train
   augmentation: random crop and flip) and the local view (random resized crop, scale
   [0.25, 1], and flip; dfkd/synthesis/views.py). On the global view it minimises
   bn * L_BN + oh * CE(T(global), y) - adv * masked KL(S || T) (only samples on which student and
   teacher agree, T = 1), plus cr * the contrastive loss between the views' features: the
   spatial means of the teacher's hooked layer inputs (every BatchNorm2d, or a ResNet's four
   stages), through a persistent projection head (Linear-ReLU-Linear to 256, L2-normalised, its
   own Adam), against up to 4,096 negatives drawn from a FIFO bank of 40,960 earlier feature
   pairs (dfkd/synthesis/memory_bank.py), at temperature 0.1;
3. the lowest-loss batch of the round joins the pool and its features the bank; the student
   then learns from the pool at T = 20 (dfkd/methods/pooled.py).

Where this differs from the reference:
- the lowest loss is tracked on the device (the reference reads it to the host every step), and
  the bank lives on the device: the same values;
- one round differs: the one after the bank has been filled exactly to capacity (round 161 at a
  synthesis batch of 256, round 81 at 512). The reference's MemoryBank then samples from
  range(0) and returns no negatives: its contrastive loss has no cached rows, so its gradient is
  that of the current rows alone, and its value adds the mean of an empty set, NaN, at every
  step of the round; no NaN is below the best loss so far, so the round keeps its first iterate,
  the freshly reset generator's untrained batch, in the pool and its features in the bank. Here
  the bank samples its filled entries then too, and the round keeps its lowest-loss batch as
  every other round does (dfkd/synthesis/memory_bank.py);
- on a dataset whose labels a mirror image changes (digits), neither view flips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfkd.generators import build_generator, reset_weights
from dfkd.hooks import LayerInputMeans
from dfkd.losses import batch_norm_statistics_loss, contrastive_loss, masked_kl_divergence
from dfkd.methods.base import GenerativeMethodConfig, LossTerms, MethodContext
from dfkd.methods.pooled import PooledMethod, PooledMethodConfig
from dfkd.schema import non_negative, positive
from dfkd.synthesis.memory_bank import FeatureBank
from dfkd.synthesis.views import LocalView


@dataclass(frozen=True)
class CMIConfig(PooledMethodConfig, GenerativeMethodConfig):
    contrastive_weight: float = field(metadata=non_negative)
    contrastive_temperature: float = field(metadata=positive)
    # Whose inputs give the features: every BatchNorm2d of the teacher, or a ResNet's stages.
    feature_layers: Literal["batch_norm", "stages"]
    bank_size: int = field(metadata=positive)  # feature pairs kept
    negatives: int = field(metadata=positive)  # drawn from the bank each step
    head_dim: int = field(metadata=positive)
    head_learning_rate: float = field(metadata=positive)  # Adam, default betas


class ProjectionHead(nn.Module):
    """Linear(D, D) -> ReLU -> Linear(D, head_dim) -> L2 normalisation (MLPHead)."""

    def __init__(self, features: int, head_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, head_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        # float32 before the norm, which CUDA's autocast computes in float32, the CPU's not
        return F.normalize(self.layers(x).float(), dim=1, p=2)


class CMI(PooledMethod):
    config_class = CMIConfig
    config: CMIConfig

    def __init__(self, config: CMIConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        device = context.device
        self.generator = build_generator(
            config.generator, config.latent_dim, config.generator_base_channels, context.image_size
        ).to(device, memory_format=context.memory_format)
        layers = (
            self.teacher.stage_modules()
            if config.feature_layers == "stages"
            else [m for m in self.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        )
        self.features = LayerInputMeans(layers)
        size = context.image_size
        with torch.no_grad(), self.features.recording() as means:
            self.teacher(torch.zeros(1, 3, size, size, device=device))
        dim = sum(m.shape[1] for m in means)
        self.head = ProjectionHead(dim, config.head_dim).to(device)
        self.head_optimizer = torch.optim.Adam(
            self.head.parameters(), lr=config.head_learning_rate, **context.optimizer_options
        )
        self.bank = FeatureBank(config.bank_size, 2 * dim, device)  # (local || global)
        self.local_view = LocalView(size, flip=context.mirror_keeps_label)
        self._round: dict[str, Any] | None = None

    def _views(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        normalize = self.context.normalize
        return normalize(self.context.augment(pixels)), normalize(self.local_view(pixels))

    def _start_round(self) -> None:
        # The reference's order of draws: codes, targets, then the generator's new weights.
        z = torch.randn(
            self.synthesis_batch_size, self.config.latent_dim, device=self.context.device
        )
        targets = self.random_targets()
        reset_weights(self.generator)
        self._set_round(z, targets)

    def _set_round(self, z: Tensor, targets: Tensor) -> None:
        z = z.detach().clone().requires_grad_(True)
        self._round = {
            "z": z,
            "targets": targets,
            "optimizer": torch.optim.Adam(
                [{"params": self.generator.parameters()}, {"params": [z]}],
                lr=self.config.generator_learning_rate,
                betas=self.config.generator_betas,
                **self.context.optimizer_options,
            ),
            "best_loss": torch.full((), torch.inf, device=self.context.device),
            "best_pixels": None,
            "best_features": None,
        }

    def generator_step(self) -> LossTerms:
        if self._round is None:
            self._start_round()
        config, round_ = self.config, self._round
        self.generator.train()
        pixels = self.generator(round_["z"])  # (B, 3, H, W) in [0, 1]
        global_view, local_view = self._views(pixels)
        with (
            self.teacher_batch_norms.recording() as statistics,
            self.features.recording() as global_means,
        ):
            teacher_logits = self.teacher(global_view)
        with self.features.recording() as local_means:
            self.teacher(local_view)
        student_logits = self.student(global_view)
        global_features, local_features = torch.cat(global_means, 1), torch.cat(local_means, 1)

        cached_local, cached_global = self.bank.sample(config.negatives).chunk(2, dim=1)
        projected = self.head(
            torch.cat([local_features, cached_local, global_features, cached_global])
        )
        projected_local, projected_global = projected.chunk(2)
        terms = {
            "bn_statistics": config.bn_statistics_weight
            * batch_norm_statistics_loss(
                statistics.means,
                statistics.variances,
                statistics.running_means,
                statistics.running_variances,
            ),
            "one_hot": config.one_hot_weight * F.cross_entropy(teacher_logits, round_["targets"]),
            "adversarial": -config.adversarial_weight
            * masked_kl_divergence(student_logits, teacher_logits, temperature=1.0),
            "contrastive": config.contrastive_weight
            * contrastive_loss(
                projected_local, projected_global, len(pixels), config.contrastive_temperature
            ),
        }
        round_["optimizer"].zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)
        terms = self.backpropagate(terms)
        loss = torch.stack(list(terms.values())).sum()
        with torch.no_grad():  # this batch and its features, if the best of the round so far
            features = torch.cat([local_features, global_features], 1)
            if round_["best_pixels"] is None:
                round_["best_pixels"], round_["best_features"] = pixels, features
            improved = loss < round_["best_loss"]
            round_["best_loss"] = torch.where(improved, loss, round_["best_loss"])
            round_["best_pixels"] = torch.where(improved, pixels, round_["best_pixels"])
            round_["best_features"] = torch.where(improved, features, round_["best_features"])
        round_["optimizer"].step()
        self.head_optimizer.step()
        return terms

    def finish_synthesis(self) -> None:
        if self._round is None:
            return
        self.pool.add(self._round["best_pixels"])
        self.bank.add(self._round["best_features"])
        self._round = None

    def state_dict(self) -> dict[str, Any]:
        state = {
            **super().state_dict(),
            "generator": self.generator.state_dict(),
            "head": self.head.state_dict(),
            "head_optimizer": self.head_optimizer.state_dict(),
            "bank": self.bank.state_dict(),
        }
        if self._round is not None:
            state["round"] = {key: self._round[key] for key in ("z", "targets", "best_loss")} | {
                "optimizer": self._round["optimizer"].state_dict(),
                "best_pixels": self._round["best_pixels"],
                "best_features": self._round["best_features"],
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.load_state_dict(state["generator"])
        self.head.load_state_dict(state["head"])
        self.head_optimizer.load_state_dict(state["head_optimizer"])
        self.bank.load_state_dict(state["bank"])
        self._round = None
        if "round" in state:
            device, saved = self.context.device, state["round"]
            self._set_round(saved["z"].to(device), saved["targets"].to(device))
            self._round["optimizer"].load_state_dict(saved["optimizer"])
            self._round["best_loss"] = saved["best_loss"].to(device)
            for key in ("best_pixels", "best_features"):
                value = saved[key]
                self._round[key] = value.to(device) if value is not None else None
