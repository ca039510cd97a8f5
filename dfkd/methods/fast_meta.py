"""Fast-DFKD: a meta-learned generator (Fang et al., "Up to 100x Faster Data-free Knowledge
Distillation", AAAI 2022, arXiv 2112.06253), as its code runs it: zju-vipa/Fast-Datafree 0dcecbc
datafree/synthesis/fast_meta.py (`FastMetaSynthesizer`, `--is_maml 1`), datafree_kd.py and
scripts/fast_cifar.sh (Fast-2, Fast-5, Fast-10: 2, 5 or 10 synthesis steps).

One generator (CMI's, nz 256, ngf 64) is learned across syntheses, first-order MAML style. Each
synthesis starts from a copy of it and fresh latent codes z ~ N(0, 1) with uniform (unsorted)
targets, and runs `steps` Adam steps (lr_g, z at lr_z, betas (0.5, 0.999), new each synthesis) on
the copy and z, minimising the objective of dfkd/methods/fast_inversion.py (bn 10 with momentum
0.9, oh 0.5, adv 1.33 on ResNet-34; the adversarial term from the last warm-up epoch on, where
the reference's `ep >= warmup` holds after its increment). The gradients of the copy at every
step are summed into the meta-generator's, which then takes one step of its own Adam (lr_g x
steps, betas (0.5, 0.999), kept over the run): the update is carried back. The copy's
lowest-loss batch joins the pool. Once, at the start of epoch 140 (`120 + warmup`, 1-based), the
meta-generator's first Linear and first BatchNorm get weights N(0, 0.02) and biases 0 (`reset_l0`).
The loop (params/methods/fast10.yaml): 20 warm-up epochs of one synthesis and no student step,
then per epoch one synthesis and 400 student steps on batches of 256 from the whole pool at
T = 20, SGD 0.2 with a cosine down to 2e-4 over the epochs after warm-up.

What the release needed, and the suite's choices:
- datafree_kd.py hard-codes the cosine's length to 200 epochs (`CosineAnnealingLR(optimizer,
  200, eta_min=2e-4)`), which equals the epochs after warm-up in every script (220 - 20); the
  suite's default anneals over the epochs after warm-up whatever their number, and
  `cosine_epochs: 200` in a params file is the reference's behaviour (the lr rises again past it);
- only CIFAR-100 script lines exist ("modify --dataset (and nothing else) to apply to CIFAR10"),
  so CIFAR-10 runs the same lines; there is no Tiny-ImageNet recipe;
- it saves and reports the best epoch on the test set; the suite reports the final epoch;
- its `--fp16` path uses `args.scaler_s`, never set: every published run is float32;
- pool images are 8-bit PNGs in a folder a rerun silently reuses; the suite keeps the same 8-bit
  pixels in memory, per run (dfkd/synthesis/pool.py);
- the meta-step is taken when the synthesis ends (`finish_synthesis`) rather than inside its last
  step, before that step's inner update: the meta-generator's update is the same, since the inner
  update only changes the copy;
- the copy is a deep copy of the meta-generator, where the reference builds a new generator (one
  more draw of PyTorch's default initialisation) and loads the meta-generator's state into it;
- the lowest loss is tracked on the device (the reference reads it every step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dfkd.generators import Generator, build_generator
from dfkd.methods.base import GenerativeMethodConfig, LossTerms, MethodContext
from dfkd.methods.fast_inversion import FastInversionConfig, FastInversionMethod
from dfkd.schema import positive


@dataclass(frozen=True)
class FastMetaConfig(FastInversionConfig, GenerativeMethodConfig):
    latent_learning_rate: float = field(metadata=positive)  # `--lr_z`, inner Adam on z
    # The meta-generator's Adam: lr_g x g_steps in the reference (FastMetaSynthesizer).
    meta_learning_rate: float = field(metadata=positive)
    # The 1-based epoch whose first synthesis resets the first layers (`120 + warmup`); null:
    # never (`--reset_l0 0`).
    first_layer_reset_epoch: int | None = field(metadata=positive)


def reset_first_layers(generator: Generator) -> None:
    """`reset_l0`: the projection (`l1.0`) and the first BatchNorm (`conv_blocks.0`) get weights
    N(0, 0.02) and biases 0, the BatchNorm's weight included (the reference's one rule for both)."""
    for module in (generator.project, generator.body[0]):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


class FastMeta(FastInversionMethod):
    config_class = FastMetaConfig
    config: FastMetaConfig

    def __init__(self, config: FastMetaConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.meta_generator: Generator = build_generator(
            config.generator, config.latent_dim, config.generator_base_channels, context.image_size
        ).to(context.device, memory_format=context.memory_format)
        self.meta_optimizer = torch.optim.Adam(
            self.meta_generator.parameters(),
            lr=config.meta_learning_rate,
            betas=config.generator_betas,
            **context.optimizer_options,
        )
        self.generator: Generator | None = None  # the copy of the synthesis in progress (or last)
        self.last_synthesis_epoch = 0  # 1-based epoch of the latest synthesis started

    def adversarial_active(self) -> bool:
        return self.epochs_completed + 1 >= self.context.warmup_epochs

    def _inner_optimizer(self, z: torch.Tensor) -> torch.optim.Optimizer:
        config = self.config
        return torch.optim.Adam(
            [
                {"params": self.generator.parameters()},
                {"params": [z], "lr": config.latent_learning_rate},
            ],
            lr=config.generator_learning_rate,
            betas=config.generator_betas,
            **self.context.optimizer_options,
        )

    def _start_round(self) -> None:
        epoch = self.epochs_completed + 1
        if epoch != self.last_synthesis_epoch:  # the epoch's first synthesis
            self.last_synthesis_epoch = epoch
            if epoch == self.config.first_layer_reset_epoch:
                with torch.no_grad():
                    reset_first_layers(self.meta_generator)
        size, device = self.synthesis_batch_size, self.context.device
        z = torch.randn(size, self.config.latent_dim, device=device).requires_grad_(True)
        targets = torch.randint(0, self.context.num_classes, (size,)).to(device)
        self.generator = copy.deepcopy(self.meta_generator)
        self._round = self.new_round(z=z, targets=targets, optimizer=self._inner_optimizer(z))

    def generator_step(self) -> LossTerms:
        if self._round is None:
            self._start_round()
        round_ = self._round
        self.generator.train()
        pixels = self.generator(round_["z"])  # (B, 3, H, W) in [0, 1]
        terms = self.inversion_terms(pixels, round_["targets"])
        round_["optimizer"].zero_grad(set_to_none=True)
        terms = self.backpropagate(terms)
        self.keep_if_best(torch.stack(list(terms.values())).sum(), pixels)
        with torch.no_grad():  # first-order MAML: the copy's gradients, summed over the steps
            pairs = zip(self.meta_generator.parameters(), self.generator.parameters(), strict=True)
            for meta, inner in pairs:
                if inner.grad is None:
                    continue
                meta.grad = inner.grad.clone() if meta.grad is None else meta.grad.add_(inner.grad)
        round_["optimizer"].step()
        return terms

    def finish_synthesis(self) -> None:
        if self._round is None:
            return
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        super().finish_synthesis()

    def state_dict(self) -> dict[str, Any]:
        state = {
            **super().state_dict(),
            "meta_generator": self.meta_generator.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "last_synthesis_epoch": self.last_synthesis_epoch,
        }
        if self._round is not None:
            state["round"] = self.round_state() | {
                "z": self._round["z"].detach(),
                "targets": self._round["targets"],
                "optimizer": self._round["optimizer"].state_dict(),
                "generator": self.generator.state_dict(),
                "meta_gradients": [p.grad for p in self.meta_generator.parameters()],
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.meta_generator.load_state_dict(state["meta_generator"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.last_synthesis_epoch = state["last_synthesis_epoch"]
        self._round = None
        if "round" in state:
            saved, device = state["round"], self.context.device
            self.generator = copy.deepcopy(self.meta_generator)
            self.generator.load_state_dict(saved["generator"])
            z = saved["z"].to(device).requires_grad_(True)
            optimizer = self._inner_optimizer(z)
            optimizer.load_state_dict(saved["optimizer"])
            targets = saved["targets"].to(device)
            self._round = self.new_round(z=z, targets=targets, optimizer=optimizer)
            self.load_round_state(saved)
            for parameter, gradient in zip(
                self.meta_generator.parameters(), saved["meta_gradients"], strict=True
            ):
                parameter.grad = None if gradient is None else gradient.to(device)
