"""DFQ: Data-Free Network Quantization With Adversarial Knowledge Distillation (Choi et al.,
CVPR Workshops 2020, arXiv 2005.04136), as implemented in the CMI code base.

No official DFQ code exists; every published DFQ comparison number (CMI Table 1, CuDFKD Tables
1-2) comes from zju-vipa/CMI 9e79fa9 (datafree_kd.py method `dfq`, datafree/synthesis/
generative.py), which is what this file reproduces (methods.md §3.3). The generator maximises the
student-teacher disagreement KL(T || S) at T=1 (adversarial term) while matching the teacher's
BatchNorm statistics, making the teacher confident (one-hot) and balancing the classes over the
batch; the student then mimics the teacher on fresh eval-mode samples with KL at T=1 (the `--T`
flag of the scripts is ignored by the reference code).

Known deviations of the CMI code from the DFQ paper (not verifiable here, methods.md §3.3): the
paper matches BN statistics with a per-channel Gaussian KL rather than L2 norms and allows several
generators and students. The code version is implemented because it produced the published
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dfkd.hooks import BatchNormInputs
from dfkd.losses import (
    batch_norm_statistics_loss,
    class_balance_loss,
    kl_divergence,
    one_hot_loss,
)
from dfkd.methods.base import GenerativeMethod, GenerativeMethodConfig, LossTerms, MethodContext
from dfkd.schema import non_negative


@dataclass(frozen=True)
class DFQConfig(GenerativeMethodConfig):
    adversarial_weight: float = field(metadata=non_negative)  # scales -KL(T || S), T=1
    bn_statistics_weight: float = field(metadata=non_negative)
    one_hot_weight: float = field(metadata=non_negative)
    class_balance_weight: float = field(metadata=non_negative)  # natural-log batch entropy


class DFQ(GenerativeMethod):
    config_class = DFQConfig
    config: DFQConfig

    def __init__(self, config: DFQConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.teacher_batch_norms = BatchNormInputs(self.teacher)

    def generator_step(self) -> LossTerms:
        images = self.generate(self.context.batch_size)
        with self.teacher_batch_norms.recording() as statistics:
            teacher_logits = self.teacher(images)
        student_logits = self.student(images)
        disagreement = kl_divergence(student_logits, teacher_logits, temperature=1.0)
        return self.optimize_generator(
            {
                "adversarial": -self.config.adversarial_weight * disagreement,
                "bn_statistics": self.config.bn_statistics_weight
                * batch_norm_statistics_loss(
                    statistics.means,
                    statistics.variances,
                    statistics.running_means,
                    statistics.running_variances,
                ),
                "one_hot": self.config.one_hot_weight * one_hot_loss(teacher_logits),
                "class_balance": self.config.class_balance_weight
                * class_balance_loss(teacher_logits),
            }
        )
