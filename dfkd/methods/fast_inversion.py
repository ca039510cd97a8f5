"""What Fast-DFKD and NAYER (built on Fast-DFKD's code) share: a synthesis objective with a
moving average of BN statistics, the lowest-loss batch of each synthesis kept in a pool, and an
adversarial term that waits for the loop's warm-up to end.

Both references (zju-vipa/Fast-Datafree 0dcecbc datafree/synthesis/fast_meta.py; tmtuan1307/
NAYER c6bedcd datafree/synthesis/nayer.py) compute, on a view of the generated pixels through
the dataset's train augmentation (random crop with zero padding 4, a flip; kornia's
RandomCrop/RandomHorizontalFlip before the normaliser):

    bn * L_BN(momentum m; dfkd/synthesis/statistics_momentum.py) + oh * CE(T(view), y)
        - adv * mean_i [argmax S(view)_i = argmax T(view)_i] KL_i(T(view) || S(view))   (T = 1)

The adversarial term and the student's forward pass are absent while the method says so (each
reference has its own rule for the epochs after warm-up). Each synthesis keeps the generated
pixels of its lowest-loss step (compared before that step's update), which join the pool when it
ends (`finish_synthesis`), and folds the statistics of its last step into the moving average.
The student learns from the whole pool at T = 20 (dfkd/methods/pooled.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dfkd.losses import batch_norm_statistics_loss, masked_kl_divergence
from dfkd.methods.base import LossTerms, MethodContext
from dfkd.methods.pooled import PooledMethod, PooledMethodConfig
from dfkd.schema import probability
from dfkd.synthesis.statistics_momentum import StatisticsMomentum


@dataclass(frozen=True)
class FastInversionConfig(PooledMethodConfig):
    bn_statistics_momentum: float = field(metadata=probability)  # `--bn_mmt`
    # The synthesis view's flip (NAYER leaves it out on Tiny-ImageNet); never where a mirror
    # image changes the label (digits).
    synthesis_flip: bool


class FastInversionMethod(PooledMethod):
    config: FastInversionConfig

    def __init__(self, config: FastInversionConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.statistics_momentum = StatisticsMomentum(config.bn_statistics_momentum)
        self.epochs_completed = 0  # the loop's, counted through on_epoch_end
        self._round: dict[str, Any] | None = None  # the synthesis in progress

    def adversarial_active(self) -> bool:
        """Whether the current epoch's syntheses have the adversarial term."""
        raise NotImplementedError

    def inversion_terms(self, pixels: Tensor, targets: Tensor) -> LossTerms:
        """The weighted terms on generated `pixels` (N, 3, H, W) in [0, 1], with gradient."""
        config, context = self.config, self.context
        flip = config.synthesis_flip and context.mirror_keeps_label
        view = context.normalize(context.augment(pixels, flip=flip))
        with self.teacher_batch_norms.recording() as statistics:
            teacher_logits = self.teacher(view)
        last = ([m.detach() for m in statistics.means], [v.detach() for v in statistics.variances])
        self._round["last_statistics"] = last
        means, variances = self.statistics_momentum.blended(statistics.means, statistics.variances)
        terms = {
            "bn_statistics": config.bn_statistics_weight
            * batch_norm_statistics_loss(
                means, variances, statistics.running_means, statistics.running_variances
            ),
            "one_hot": config.one_hot_weight * F.cross_entropy(teacher_logits, targets),
        }
        if config.adversarial_weight > 0 and self.adversarial_active():
            student_logits = self.student(view)
            terms["adversarial"] = -config.adversarial_weight * masked_kl_divergence(
                student_logits, teacher_logits, temperature=1.0
            )
        return terms

    @torch.no_grad()
    def keep_if_best(self, loss: Tensor, pixels: Tensor) -> None:
        """Keeps `pixels` if their loss is the synthesis's lowest so far (on the device)."""
        round_ = self._round
        if round_["best_pixels"] is None:
            round_["best_pixels"] = pixels.detach().clone()
        improved = loss.detach() < round_["best_loss"]
        round_["best_loss"] = torch.where(improved, loss.detach(), round_["best_loss"])
        round_["best_pixels"] = torch.where(improved, pixels.detach(), round_["best_pixels"])

    def new_round(self, **entries: Any) -> dict[str, Any]:
        return {
            **entries,
            "best_loss": torch.full((), torch.inf, device=self.context.device),
            "best_pixels": None,
            "last_statistics": None,
        }

    def finish_synthesis(self) -> None:
        if self._round is None:  # a synthesis of no step keeps nothing
            return
        self.statistics_momentum.update(*self._round["last_statistics"])
        self.pool.add(self._round["best_pixels"])
        self._round = None

    def on_epoch_end(self, epoch: int) -> None:
        self.epochs_completed = epoch

    def round_state(self) -> dict[str, Any]:
        """The shared part of a synthesis in progress, for a checkpoint."""
        round_ = self._round
        means, variances = round_["last_statistics"]
        return {
            "best_loss": round_["best_loss"],
            "best_pixels": round_["best_pixels"],
            "last_statistics": {"means": means, "variances": variances},
        }

    def load_round_state(self, saved: dict[str, Any]) -> None:
        device = self.context.device
        statistics = saved["last_statistics"]
        self._round["best_loss"] = saved["best_loss"].to(device)
        self._round["best_pixels"] = saved["best_pixels"].to(device)
        self._round["last_statistics"] = (
            [m.to(device) for m in statistics["means"]],
            [v.to(device) for v in statistics["variances"]],
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "statistics_momentum": self.statistics_momentum.state_dict(),
            "epochs_completed": self.epochs_completed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.statistics_momentum.load_state_dict(state["statistics_momentum"], self.context.device)
        self.epochs_completed = state["epochs_completed"]
