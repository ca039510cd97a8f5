"""Every method's loss terms send their gradient to what they train, and nowhere else.

For every params/methods/*.yaml (a method added later is covered without a line here), one
generator step is watched where it backpropagates (DFKDMethod.backpropagate). For each weighted
term, from the autograd graph alone:

- every tensor it reaches must be one that the method's optimizers step (latent codes left out
  of their optimizer fail here), never the teacher's or the student's;
- it must send a non-zero gradient to every kind of synthesis variable the method trains
  (generator weights, latent codes, pixels, projection head, class embeddings: by default all of
  them; TRAINS lists a term that trains fewer) and none to the others;
- its gradient must be the derivative of its value: along random directions, autograd's
  directional derivative equals the central difference of the term's value, recomputed by
  re-running the step on copies of the method at perturbed parameters, in float64. A detached
  student or teacher input changes a term's gradient but not its value; this is where it shows.

The student loss likewise: each of its terms reaches the student's parameters and nothing else,
with the derivative of its value. Each method runs halfway through a short run (so curricula have
switched their terms on) with the settings of ACTIVE, which make every term non-zero; a term that
is exactly 0 fails, so a new method states here where its terms are active.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from dfkd.data import dataset_info
from tests.support import build_method, method_names

# Settings under which every term of a params file is non-zero (its hinges bite, its zero
# weights are not zero); one case each, plus the extra cases of EXTRA.
ACTIVE: dict[str, dict] = {
    "adi": {"l2_weight": 1e-3},
    "mad": {"logit_bound": 0.05, "generator_logit_bound": 0.5},
}
EXTRA: dict[str, list[dict]] = {
    # A class-conditional generator: its embeddings are trained too (Table 6 cg "Yes").
    "mad": [
        {
            "generator": "mad_sum", "nll_weight": 0.1, "norm_reg_weight": 0.5,
            "norm_reg_scale": 0.5, "logit_bound": 0.05, "generator_logit_bound": 0.5,
        }
    ],
    "cudfkd": [{"adversarial_divergence": "clamped_js"}, {"self_paced": "none"}],
}  # fmt: skip

# By implementation: the synthesis variables a term trains where it is not all of them.
TRAINS: dict[str, dict[str, set[str]]] = {
    # CMI's projection head learns from the contrastive loss alone (its own Adam).
    "cmi": {term: {"generator", "z"} for term in ("bn_statistics", "one_hot", "adversarial")},
    # NormReg (App. C) bounds the embeddings' norms; no generator weight enters it.
    "mad": {"norm_reg": {"embeddings"}},
    # Every term trains the synthesis's copy and its codes; the meta-generator learns from the
    # copy's summed gradients at the meta-step, never through the graph (tests/test_fast_meta.py).
    "fast_meta": {term: {"generator", "z"} for term in ("bn_statistics", "one_hot", "adversarial")},
}

# By implementation: terms whose value includes a branch the method deliberately stops the
# gradient of (where the config says so), so that only their reach is checked, not the
# derivative of their value.
STOPPED: dict[str, dict[str, Callable]] = {
    # The global view's projections are a stop-gradient (contrastive.py).
    "cmi": {"contrastive": lambda config: True},
    # The self-paced weights v* are constants of the student's step (Eq. 4).
    "cudfkd": {"kd": lambda config: config.self_paced != "none"},
}


def _stopped(method, implementation: str) -> set[str]:
    rules = STOPPED.get(implementation, {})
    return {term for term, applies in rules.items() if applies(method.config)}


SEED = 13
BATCH = 32  # enough samples that student and teacher agree on some (the masked KL terms)
EPSILON = 1e-8  # small enough that no ReLU of the networks changes side


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """The dataset normalisation, in float64 (the suite's returns float32, as the reference)."""
    pixels = images.double() / 255 if images.dtype == torch.uint8 else images.double()
    return (pixels - mean) / std


def _method(suite, name: str, index: int):
    """A float64 copy of the method of case `index` of `name`, warmed up (once per session)."""
    if (name, index) not in _WARMED:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # the warm-up at float32 speed
        try:
            _WARMED[name, index] = _warm_up(suite, name, _cases(name)[index])
        finally:
            torch.set_default_dtype(previous)
        _to_float64(_WARMED[name, index])
    return copy.deepcopy(_WARMED[name, index])


_WARMED: dict[tuple[str, int], object] = {}


def _cases(name: str) -> list[dict]:
    return [ACTIVE.get(name, {}), *EXTRA.get(name, [])]


def _warm_up(suite, name: str, overrides: dict):
    """The method halfway through a short run (curricula switched on), after a round whose
    student learnt enough to agree with the teacher on some samples, in a second round."""
    method = build_method(suite, name, batch_size=BATCH, overrides=overrides)
    method.student.eval().requires_grad_(False)  # the loop's synthesis phase
    method.pretrain()
    method.on_epoch_end(method.context.epochs // 2)
    method.generator_step()
    method.finish_synthesis()
    _train_student(method)
    method.generator_step()  # pools, banks and EMA copies are not empty in this round
    return method


def _to_float64(method) -> None:
    """Every floating-point tensor of the method (its networks, its synthesis variables, its
    optimizers' states, its banks) in float64, in place, and a float64 normalisation."""
    seen: set[int] = set()

    def visit(value) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, nn.Module):
            value.double()
        elif isinstance(value, Tensor):
            if value.is_floating_point():
                value.grad = None
                value.data = value.data.double()
        elif isinstance(value, torch.optim.Optimizer):
            for state in value.state.values():
                for item in state.values():
                    visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif type(value).__module__.startswith("dfkd."):
            for item in vars(value).values():
                visit(item)

    visit(method.teacher)
    visit(method.student)
    visit(vars(method))
    info = dataset_info("digits")
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (info.mean, info.std))
    normalize = functools.partial(_normalize, mean=mean, std=std)
    method.context = replace(method.context, normalize=normalize)


def _train_student(method, most: int = 100) -> None:
    """Distils until the student agrees with the teacher on a quarter of a synthetic batch."""
    method.student.train().requires_grad_(True)
    optimizer = torch.optim.SGD(method.student.parameters(), lr=0.1, momentum=0.9)
    for _ in range(most):
        optimizer.zero_grad()
        loss = torch.stack(list(method.student_loss().values())).sum()
        assert loss.requires_grad, f"{type(method).__name__}'s student loss carries no gradient"
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            images = method.sample(BATCH)
            agree = method.student.eval()(images).argmax(1) == method.teacher(images).argmax(1)
            method.student.train()
        if agree.float().mean() >= 0.25:
            break
    method.student.eval().requires_grad_(False)


def _variables(method) -> tuple[dict[int, str], list[torch.optim.Optimizer]]:
    """Every tensor the method holds, labelled by the attribute or key it is held under (a
    module's parameters by the module's), and every optimizer it holds."""
    labels: dict[int, str] = {}
    optimizers: list[torch.optim.Optimizer] = []
    seen: set[int] = set()

    def visit(value, label: str) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.optim.Optimizer):
            optimizers.append(value)
        elif isinstance(value, nn.Module):
            for parameter in value.parameters():
                labels.setdefault(id(parameter), label)
        elif isinstance(value, Tensor):
            labels.setdefault(id(value), label)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, str(key))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, label)

    visit(method.teacher, "teacher")
    visit(method.student, "student")
    for attribute, value in vars(method).items():
        visit(value, attribute)
    return labels, optimizers


def _leaves(tensor: Tensor) -> list[Tensor]:
    """The leaf tensors whose gradient `tensor`'s autograd graph accumulates."""
    if tensor.grad_fn is None:
        return [tensor] if tensor.requires_grad else []
    found: dict[int, Tensor] = {}
    stack, seen = [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad
            found[id(node.variable)] = node.variable
        stack.extend(child for child, _ in node.next_functions)
    return list(found.values())


def _gradients(terms: dict[str, Tensor]) -> dict[str, dict[int, Tensor]]:
    """Per term: the gradient of each leaf it reaches, by the leaf's id."""
    result = {}
    for name, term in terms.items():
        leaves = _leaves(term)
        grads = (
            torch.autograd.grad(term, leaves, retain_graph=True, allow_unused=True)
            if leaves
            else ()
        )
        result[name] = {
            id(leaf): (torch.zeros_like(leaf) if grad is None else grad)
            for leaf, grad in zip(leaves, grads, strict=True)
        }
    return result


def _watched_generator_step(method) -> tuple[dict[str, Tensor], dict[str, dict[int, Tensor]]]:
    captured: list[dict[str, dict[int, Tensor]]] = []
    original = method.backpropagate

    def backpropagate(terms):
        captured.append(_gradients(terms))
        return original(terms)

    method.backpropagate = backpropagate
    torch.manual_seed(SEED)
    values = method.generator_step()
    del method.backpropagate
    assert len(captured) == 1, (
        f"{type(method).__name__}.generator_step backpropagated {len(captured)} times through "
        "DFKDMethod.backpropagate; a synthesis loss must go through it exactly once"
    )
    assert captured[0].keys() == values.keys()
    return values, captured[0]


def _directions(leaves: dict[int, Tensor]) -> dict[int, Tensor]:
    """A random direction per leaf, at the scale of the leaf's own values."""
    generator = torch.Generator().manual_seed(0)
    directions = {}
    for key, leaf in sorted(leaves.items(), key=lambda item: tuple(item[1].shape)):
        scale = float(leaf.detach().std()) if leaf.numel() > 1 else 0.0
        noise = torch.randn(leaf.shape, generator=generator, dtype=leaf.dtype)
        directions[key] = noise * (scale if scale > 0 else 1e-2)
    return directions


def _derivatives_of_values(
    before, leaves: dict[int, Tensor], directions: dict[int, Tensor], step: Callable
) -> dict[str, float]:
    """d/de of each term's value at the parameters + e * direction, by central differences on
    copies of `before` (the method as it was before the watched step)."""
    values = []
    for sign in (1, -1):
        memo: dict = {}
        trial = copy.deepcopy(before, memo)
        with torch.no_grad():
            for key, direction in directions.items():
                memo[id(leaves[key])].add_(sign * EPSILON * direction)
        torch.manual_seed(SEED)
        values.append({name: float(value.detach()) for name, value in step(trial).items()})
    return {name: (values[0][name] - values[1][name]) / (2 * EPSILON) for name in values[0]}


def _check_derivatives(where, values, grads, directions, fd, stopped) -> None:
    for name, per_leaf in grads.items():
        if name in stopped:
            continue
        analytic = sum(
            float((grad * directions[key]).sum())
            for key, grad in per_leaf.items()
            if key in directions
        )
        scale = sum(float((g * directions.get(k, 0)).abs().sum()) for k, g in per_leaf.items())
        rounding = 8 * torch.finfo(torch.float64).eps * abs(values[name]) / EPSILON
        assert abs(analytic - fd[name]) <= 1e-4 * scale + rounding + 1e-9, (
            f"{where}: term '{name}': its gradient gives a directional derivative of {analytic:.6g}"
            f", its value changes at {fd[name]:.6g}: a branch of the term does not backpropagate "
            "(a detached input?)"
        )


CASES = [
    pytest.param(name, index, id=f"{name}-{index}")
    for name in method_names()
    for index in range(len(_cases(name)))
]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_each_synthesis_term_trains_what_it_should(suite, float64, name, case):
    implementation, overrides = suite.methods[name].implementation, _cases(name)[case]
    method = _method(suite, name, case)
    labels, optimizers = _variables(method)
    optimized = {
        id(p): p for opt in optimizers for group in opt.param_groups for p in group["params"]
    }
    kinds = {labels.get(key, "unlabelled") for key in optimized}
    assert optimized and "teacher" not in kinds and "student" not in kinds, (
        f"{name}: the synthesis optimizers step {sorted(kinds)}"
    )
    before_memo: dict = {}
    before = copy.deepcopy(method, before_memo)

    values, grads = _watched_generator_step(method)

    expected_kinds = TRAINS.get(implementation, {})
    for term, per_leaf in grads.items():
        where = f"{name} {overrides or ''} term '{term}'"
        assert float(values[term]) != 0.0, (
            f"{where} is exactly 0 here: give tests/test_gradient_flow.py ACTIVE settings in "
            "which it is active"
        )
        for key in per_leaf:
            assert key in optimized, (
                f"{where} sends gradient to '{labels.get(key, 'an unlabelled tensor')}', which "
                "no optimizer of the method steps"
            )
        reached = {labels[key] for key, grad in per_leaf.items() if grad.abs().sum() > 0}
        wanted = expected_kinds.get(term, kinds)
        assert reached == wanted, (
            f"{where} trains {sorted(reached)}; it should train {sorted(wanted)}"
        )
    leaves = {key: before_memo[key] for key in optimized}
    directions = _directions(leaves)
    shifted = {id(leaves[key]): d for key, d in directions.items()}
    fd = _derivatives_of_values(
        before, {id(v): v for v in leaves.values()}, shifted, lambda m: m.generator_step()
    )
    _check_derivatives(name, values, grads, directions, fd, _stopped(method, implementation))


@pytest.mark.parametrize(("name", "case"), CASES)
def test_the_student_loss_trains_the_student_only(suite, float64, name, case):
    implementation, overrides = suite.methods[name].implementation, _cases(name)[case]
    method = _method(suite, name, case)
    method.finish_synthesis()
    method.student.train().requires_grad_(True)  # the loop's student phase
    labels, _ = _variables(method)
    student = {id(p): p for p in method.student.parameters()}
    before_memo: dict = {}
    before = copy.deepcopy(method, before_memo)

    torch.manual_seed(SEED)
    terms = method.student_loss()

    grads = _gradients(terms)
    for term, per_leaf in grads.items():
        where = f"{name} {overrides or ''} student term '{term}'"
        assert float(terms[term].detach()) != 0.0, f"{where} is exactly 0 here: see ACTIVE"
        outside = {labels.get(key, "an unlabelled tensor") for key in per_leaf} - {"student"}
        assert not outside, f"{where} sends gradient to {sorted(outside)}"
        assert any(grad.abs().sum() > 0 for grad in per_leaf.values()), (
            f"{where} sends no gradient to the student"
        )
    directions = _directions(student)
    shifted = {id(before_memo[key]): d for key, d in directions.items()}
    leaves = {id(before_memo[key]): before_memo[key] for key in student}
    fd = _derivatives_of_values(before, leaves, shifted, lambda m: m.student_loss())
    values = {term: float(value.detach()) for term, value in terms.items()}
    _check_derivatives(name, values, grads, directions, fd, _stopped(method, implementation))
