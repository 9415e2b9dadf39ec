"""Linear experts of every fold and every L2 strength, solved at once.

On a small cohort a vector modality's intra expert is linear
(``MLPEncoder(hidden_sizes=())``): a softmax, per-label logistic or Cox
model of the standardised features, whose stage-1 objective (its mean
loss on the fold's training rows plus ``l2 / 2`` times its squared
weights) is convex. Its regularisation strength decides its accuracy on
tens to hundreds of rows, so it is chosen by the inner folds that already
run, as :class:`~sklearn.linear_model.LogisticRegressionCV` chooses ``C``:

- every fold's copy of the expert is fitted at every strength of a short
  grid: at one strength the copies of all folds and experts have disjoint
  parameters, so the sum of their objectives is minimised by each one's own
  minimiser, and one L-BFGS-B run (scipy's, in float64, on all rows at
  once) reaches all of them. Each expert's features of all rows go through
  one batched product; each fold's rows are picked by its mask, which the
  stage-1 criterion takes as the experts' availability. The strengths are
  solved from the strongest down, each run starting from the previous
  solution (a regularisation path);
- each expert's strength is the one whose fold copies have the lowest
  loss on their held-out rows, pooled over the folds;
- each fold keeps its copy at that strength, trained to convergence (no
  early stopping), and stage 1 trains only the other experts.

Measured in ``benchmarks/small_cohorts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._lazy import materialize
from .._sizing import is_full_batch
from ..nn.experts import SAMPLE_WEIGHT, IntraExpert
from .lbfgsb import minimize_lbfgsb

__all__ = [
    "L2_GRID_FACTORS",
    "MAX_SOLVE_ENTRIES",
    "SOLVER_TOL",
    "LinearSolution",
    "l2_grid",
    "linear_experts",
    "solve_into",
    "solve_linear_experts",
]

#: Multiples of the default L2 coefficient (``weight_decay="auto"``, scikit-learn's
#: ``C=1``) tried for each linear expert, strongest first: ``C`` of 0.01, 0.1
#: and 1. ``C=10`` was dropped after a check on four of the small-cohort
#: benchmark sets (breast cancer, mfeat, synthetic; seeds 0 and 1): the
#: held-out loss never chose it, and its solve took half of the iterations.
L2_GRID_FACTORS = (100.0, 10.0, 1.0)

#: Most float64 feature entries (splits x rows x features of the linear
#: experts) the solve holds: 128 MiB. Beyond, the linear experts train in
#: stage 1 with the others.
MAX_SOLVE_ENTRIES = 2**24

#: Tolerance of each solve (float64 L-BFGS-B's ``gtol``): the largest
#: gradient entry of an expert's mean loss at which it stops, scikit-learn's
#: ``LogisticRegression(tol=1e-4)``. Predicted probabilities then lie within
#: 1e-3 of the exact optimum's (``tests/test_linear_experts.py``), and the
#: solves take half the iterations of ``1e-6``: the breast cancer and mfeat
#: fits of the small-cohort sets take 7-27 % less time for the same accuracy
#: and log loss (``benchmarks/RESULTS.md``, "Small cohorts", its ``regime:
#: linear solve tolerance 1e-6`` row).
SOLVER_TOL = 1e-4


@dataclass(frozen=True)
class LinearSolution:
    """The solved linear experts.

    Attributes
    ----------
    heads : list of dict
        Per split, expert name -> ``(weight, bias)`` float32 tensors of the
        expert's output layer at the chosen strength.
    l2 : dict
        Expert name -> chosen L2 coefficient.
    grid : tuple of float
        The L2 coefficients tried.
    held_out_loss : dict
        Expert name -> array of the pooled held-out loss at each coefficient
        of ``grid``; ``None`` without held-out rows (one coefficient).
    n_iter : int
        L-BFGS iterations of the joint solve.
    """

    heads: list
    l2: dict
    grid: tuple
    held_out_loss: dict
    n_iter: int


def l2_grid(params, lbfgs_on_small_cohorts, optimizer, weight_decay, small, splits):
    """The L2 coefficients the linear experts choose from, or ``None`` (no separate solve).

    Linear experts are solved on their own on a small cohort with
    ``optimizer="auto"``, for outcomes trained with L-BFGS there
    (``lbfgs_on_small_cohorts``), unless the fit is data-parallel or has a
    stochastic loss (augmentation, modality dropout). ``params`` are the
    estimator's; ``weight_decay`` is its resolved value. ``"auto"`` gives
    the grid :data:`L2_GRID_FACTORS` around scikit-learn's ``C=1`` (``1 /
    n_train``) when the ``splits`` hold out rows to choose on, else
    ``C=1`` alone; an explicit ``weight_decay`` is the L2 coefficient
    where the stages use L-BFGS, and with a mini-batch optimizer
    (decoupled weight decay, another quantity) the linear experts train
    with the others.
    """
    if (
        params["optimizer"] != "auto"
        or not small
        or not lbfgs_on_small_cohorts
        or params["accelerator"] is not None
        or params["augment"]
        or params["modality_dropout"] > 0
    ):
        return None
    if params["weight_decay"] != "auto":
        return (weight_decay,) if is_full_batch(optimizer) else None
    default = 1.0 / max(len(splits[0][0]), 1)
    if all(valid is None for _, valid in splits):
        return (default,)
    return tuple(default * factor for factor in L2_GRID_FACTORS)


def solve_into(modules, tensors, y, splits, options, grid, device, exclude=()):
    """Solve the linear experts of every split's model and set them in ``modules``.

    Parameters
    ----------
    modules : list of I2M2Module
        One untrained model per split.
    tensors : dict
        Every row of every modality (with the presence mask and sample
        weights under their keys); a modality read from disk is read whole,
        as a small cohort's.
    y : ndarray
        The stage nets' target of every row.
    splits : sequence of (train_rows, valid_rows)
    options : StageOptions
        The outcome's; gives the stage-1 criterion.
    grid : tuple of float
        L2 coefficients (:func:`l2_grid`).
    device : torch.device
    exclude : collection of str, default=()
        Experts not to solve (kept by ``warm_start``).

    Returns
    -------
    LinearSolution or None
        ``None`` when there is no linear expert outside ``exclude``, or
        their features are too many to hold once per split
        (:data:`MAX_SOLVE_ENTRIES`).
    """
    names = linear_experts(modules[0], exclude=exclude)
    n_features = sum(modules[0].experts[name].head.in_features for name in names)
    if not names or len(modules) * len(y) * n_features > MAX_SOLVE_ENTRIES:
        return None
    criterion = options.criteria[0](**options.criterion_kwargs).to(device)
    rows = {m: materialize(t).to(device) for m, t in tensors.items()}
    solution = solve_linear_experts(
        modules, names, rows, torch.as_tensor(y, device=device), splits, criterion, grid
    )
    with torch.no_grad():
        for module, heads in zip(modules, solution.heads):
            for name, (weight, bias) in heads.items():
                module.experts[name].head.weight.copy_(weight)
                module.experts[name].head.bias.copy_(bias)
    return solution


def linear_experts(module, exclude=()):
    """Names of the intra experts of ``module`` that are linear in fixed features.

    An intra expert whose encoder has no parameters (input scaling only)
    is its output layer applied to fixed features: a convex stage-1 problem.
    """
    return [
        name
        for name, expert in module.experts.items()
        if name not in exclude
        and isinstance(expert, IntraExpert)
        and next(expert.encoder.parameters(), None) is None
    ]


def solve_linear_experts(modules, names, tensors, y, splits, criterion, grid):
    """Fit the experts ``names`` of every fold model at every L2 coefficient of ``grid``.

    Parameters
    ----------
    modules : list of I2M2Module
        One model per split, built from its training rows (their input
        scaling is the fold's).
    names : list of str
        Linear intra experts (:func:`linear_experts`).
    tensors : dict
        Every row of every modality, with the presence mask and the sample
        weights under their keys when the fit has them, on one device.
    y : tensor
        The stage nets' target of every row, on that device.
    splits : sequence of (train_rows, valid_rows)
        Row indices of each split; ``valid_rows`` ``None`` without held-out rows.
    criterion : nn.Module
        The outcome's stage-1 criterion (``per_expert_sums``).
    grid : sequence of float
        L2 coefficients; the first of equal held-out losses wins, so list
        the strongest first.

    Returns
    -------
    LinearSolution
    """
    device, n_splits = y.device, len(modules)
    train, held_out = _split_masks(splits, len(y), device)
    if held_out is None and len(grid) > 1:
        raise ValueError("Choosing among L2 coefficients needs held-out rows.")
    sample_weight = tensors.get(SAMPLE_WEIGHT)
    if sample_weight is not None:
        sample_weight = sample_weight.double()
    inputs, present = modules[0].expert_inputs(tensors)
    n_experts, n_outputs = len(names), modules[0].experts[names[0]].head.out_features
    # All experts' weights in one tensor (n_splits, n_outputs, all features),
    # each expert's columns a slice of it: one parameter vector for the
    # solver, and a loss evaluation is one small product per expert. The
    # products run outputs-first, (outputs x features) @ (features x rows):
    # with a few outputs, a long last axis of rows is what the CPU kernels
    # vectorise, for the products, their gradients and the class
    # log-softmax (``class_log_proba``), which then needs no copy.
    features, masks, columns = [], [], []
    with torch.no_grad():
        for name in names:
            expert = modules[0].experts[name]
            available = None if present is None else present[:, expert.index]
            features.append(
                torch.stack(
                    [m.experts[name].encoder(inputs[expert.modality], available) for m in modules]
                )
                .double()
                .transpose(1, 2)
                .contiguous()
            )
            masks.append(train if available is None else train & available)
            columns.append(expert.head.in_features)
    slices = [
        slice(first, first + width) for first, width in zip(np.cumsum([0, *columns[:-1]]), columns)
    ]
    available_rows = torch.stack(masks)  # (n_experts, n_splits, n)
    seen = (
        None
        if present is None
        else torch.stack([present[:, modules[0].experts[name].index] for name in names])
    )

    def loss_sums(weight, bias, rows):
        # Loss sums and weights of each (expert, split) copy over its ``rows``.
        logits = torch.stack(
            [torch.bmm(weight[:, :, part], block) for block, part in zip(features, slices)]
        )  # (n_experts, n_splits, n_outputs, n)
        logits = logits + bias.transpose(0, 1).unsqueeze(3)
        return criterion.per_expert_sums(
            logits.reshape(n_experts * n_splits, n_outputs, len(y)).transpose(1, 2),
            y,
            rows.reshape(n_experts * n_splits, -1),
            sample_weight=sample_weight,
        )

    # One solve per coefficient, strongest first, each started from the
    # previous solution (a regularisation path): far fewer iterations than
    # one solve of every coefficient at once, whose conditioning is the
    # weakest coefficient's.
    weight = torch.zeros(n_splits, n_outputs, sum(columns), dtype=torch.float64, device=device)
    bias = torch.zeros(n_splits, n_experts, n_outputs, dtype=torch.float64, device=device)
    path, n_iter = [], 0
    for l2 in grid:

        def objective(weight, bias, l2=l2):
            total, count = loss_sums(weight, bias, available_rows)
            loss = (total / count.clamp_min(1e-300)).sum()
            return loss + 0.5 * l2 * weight.square().sum()

        (weight, bias), iterations = minimize_lbfgsb(
            objective, (weight, bias), options={"maxiter": 1000, "gtol": SOLVER_TOL, "ftol": 1e-12}
        )
        n_iter += iterations
        path.append((weight, bias))
    if held_out is None:
        chosen, scores = dict.fromkeys(names, 0), dict.fromkeys(names)
    else:
        # Every expert's held-out loss at every coefficient, pooled over the
        # folds: one evaluation per coefficient.
        rows = held_out.expand(n_experts, -1, -1)
        if seen is not None:
            rows = rows & seen.unsqueeze(1)
        with torch.no_grad():
            pooled = []
            for weight, bias in path:
                total, count = loss_sums(weight, bias, rows)
                pooled.append(
                    (
                        total.view(n_experts, n_splits).sum(1)
                        / count.view(n_experts, n_splits).sum(1)
                    )
                    .cpu()
                    .numpy()
                )
        pooled = np.stack(pooled, axis=1)  # (n_experts, n_grid)
        scores = {name: pooled[e] for e, name in enumerate(names)}
        chosen = {name: int(np.nanargmin(scores[name])) for name in names}
    heads = [
        {
            name: (
                path[chosen[name]][0][k, :, part].float().contiguous(),
                path[chosen[name]][1][k, e].float(),
            )
            for e, (name, part) in enumerate(zip(names, slices))
        }
        for k in range(n_splits)
    ]
    return LinearSolution(
        heads=heads,
        l2={name: float(grid[chosen[name]]) for name in names},
        grid=tuple(float(v) for v in grid),
        held_out_loss=scores,
        n_iter=int(n_iter),
    )


def _split_masks(splits, n, device):
    """``(train, held_out)`` bool masks of shape ``(n_splits, n)``; ``held_out`` None if none."""
    train = torch.zeros(len(splits), n, dtype=torch.bool, device=device)
    held_out = torch.zeros_like(train)
    for k, (train_rows, valid_rows) in enumerate(splits):
        train[k, torch.as_tensor(train_rows, device=device)] = True
        if valid_rows is not None:
            held_out[k, torch.as_tensor(valid_rows, device=device)] = True
    return train, (held_out if held_out.any() else None)
