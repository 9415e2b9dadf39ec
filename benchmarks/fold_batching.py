"""Does training the cross-fitting fold models as one batched model pay?

A small-cohort fit (``cv="auto"``) trains 5 fold models of one architecture
(``clf.module_.folds``) one after the other. This script times one stage-1
training step of all 5: ``loop``, today's sequential training (each fold
model on its own rows of the batch, its own optimizer); ``loop, mask``, each
fold model on all rows, its loss weighted by its column of the ``(n, 5)``
training-membership mask (the formulation of the batched methods, and the
reference of the check); ``vmap``, ``torch.func.vmap`` of ``grad_and_value``
of the per-fold loss over the parameters and buffers of ``stack_module_state``
(``functional_call`` on one copy of the module); ``grouped``, hand-batched
layers on the same stacked tensors where the architecture allows (MLP and
linear encoders as ``baddbmm``, conv encoders as grouped convolutions,
concatenation fusion).

Two steps: an ``AdamW`` step (Adam is elementwise: one ``AdamW`` over
stacked parameters is 5 independent ones) and an L-BFGS closure evaluation.
Sets: three small cohorts of ``small_cohorts.py`` (full batch) and two of
2000 rows with batches of 256 (``mfeat``: MLP experts, ``kspace``: conv
experts). On a small set whose default fit trains with L-BFGS, that fit's
closure evaluations are counted and timed too (the most that batching them
could save), and so is the rest of the L-BFGS steps: the optimizer's own
bookkeeping (the two-loop recursion and the line search), which a batched
L-BFGS would do once for the 5 folds. The section goes to RESULTS.md
(``fold_batching``) or ``--output``.

Usage, from the repository root::

    python -m benchmarks.fold_batching                      # 1.5-3 min on 2 shared cores
    python -m benchmarks.fold_batching --device cuda --output gpu.md
    python -m benchmarks.fold_batching --sets bc-150 --threads 1 --no-write
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from benchmarks import common
from sk_i2m2.nn.encoder_modules import MLP, ConvNet
from sk_i2m2.nn.experts import Encoder, I2M2Module, InterExpert, IntraExpert
from sk_i2m2.nn.fusion_modules import Concat
from sk_i2m2.nn.losses import ExpertsNLLLoss
from sk_i2m2.nn.standardize import Standardize

N_FOLDS = 5
LARGE_BATCH = 256
ADAM = {"lr": 1e-3, "weight_decay": 1e-4}  # the mini-batch defaults of stage 1
TOLERANCE = 1e-5
METHODS = ("loop", "loop, mask", "vmap", "grouped")
PAYS = 1.2  # a speed-up that stands above the noise of a shared machine
CAVEATS = (
    "- `loop, mask` against `loop` is the price of the mask formulation: each fold model "
    "computes all rows of the batch, 5/4 of its own.",
    "- Only the L-BFGS closure is batched: `torch.optim.LBFGS` over stacked parameters would "
    "share one line search and curvature history among the folds (a batched L-BFGS needs "
    "per-fold ones, not in torch). Per-fold early stopping is not timed: a batched fit "
    "would freeze the folds that stopped and pay for them until the last one stops.",
    "- With BatchNorm (conv experts) the batched step is not the sequential one: a fold's "
    "batch statistics include its validation rows (the `loop` row's check); masked "
    "statistics would be needed for the same model.",
    "- Several threads on a machine whose other jobs hold cores (see the load average) wait "
    "at every operator's barrier: fewer, larger operators then win by wide, erratic margins.",
)
STEPS = {"adam": "AdamW step", "lbfgs": "L-BFGS closure"}


# ----------------------------------------------------------------------
# Data and fold models


SETS = ("bc-150", "bc-569", "digits-300", "mfeat-2000", "kspace-2000")


def load_set(name):
    """``(X, y, description)``: a small set's training rows, or a large set whole."""
    from benchmarks import small_cohorts
    from sk_i2m2.datasets import load_kspace_digits

    if name == "mfeat-2000":
        X, y = common.mfeat_views(("fou", "fac", "kar", "pix", "zer", "mor"))
        return dict(X), y, "UCI multiple-features digits, six table views"
    if name == "kspace-2000":
        X, y = load_kspace_digits()
        return {m: np.asarray(v) for m, v in X.items()}, y, "k-space digits, two images"
    X, _, y, _ = small_cohorts.load_split(name, 0)
    return X, y, small_cohorts.SETS[name].title


def without_dropout(module):
    """``module`` with every ``nn.Dropout`` replaced by ``nn.Identity`` (in place)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(parent, name, nn.Identity())
    return module


def closure_share(X, y, device):
    """``(fit s, closure evaluations, their s, L-BFGS steps' s)`` of a default fit, or None.

    ``None`` when the default fit does not train with L-BFGS. The fit keeps
    ``optimizer="auto"`` (an explicit optimizer would change the regime);
    :func:`benchmarks.common.counting_lbfgs` counts in the class each stage net
    trains with.
    """
    from sk_i2m2 import I2M2Classifier
    from sk_i2m2._sizing import is_full_batch

    warm = I2M2Classifier(random_state=0, device=device).fit(X, y)  # also pays one-off costs
    if not is_full_batch(warm.optimizer_):
        return None
    with common.counting_lbfgs() as counts:
        start = time.perf_counter()
        I2M2Classifier(random_state=0, device=device).fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, counts.calls, counts.closure_seconds, counts.step_seconds


def fold_models(X, y):
    """The 5 fold models of a short ``cv=5`` fit, in training mode, without dropout."""
    from sk_i2m2 import I2M2Classifier

    clf = I2M2Classifier(random_state=0, max_epochs=1, finetune_epochs=1, cv=N_FOLDS)
    clf.fit(X, y)
    folds = [without_dropout(copy.deepcopy(fold)).train() for fold in clf.module_.folds]
    return folds, np.searchsorted(clf.classes_, y)


def batch_and_mask(X, codes, large):
    """The step's rows (all of a small set, 256 of a large one) and their ``(n, 5)`` mask.

    The mask is 1 where the row trains the fold (stratified 5-fold split), 0 where it validates.
    """
    from sklearn.model_selection import StratifiedKFold

    n = len(codes)
    mask = np.ones((n, N_FOLDS), dtype=np.float32)
    splits = StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(np.zeros(n), codes)
    for fold, (_, valid) in enumerate(splits):
        mask[valid, fold] = 0.0
    rows = np.random.default_rng(0).permutation(n)[:LARGE_BATCH] if large else np.arange(n)
    return {m: x[rows] for m, x in X.items()}, codes[rows], mask[rows]


# ----------------------------------------------------------------------
# The methods: each computes the per-fold losses and leaves the gradients in
# its parameters' ``.grad``.


def _grad(parameter):
    """``parameter.grad``, zeros where no loss reached it (the inter expert's unused null tokens)."""
    return torch.zeros_like(parameter) if parameter.grad is None else parameter.grad


class Loop:
    """Fold models one after the other, on their own rows or on all rows with mask weights."""

    def __init__(self, folds, X, y, mask, masked):
        self.modules = [copy.deepcopy(fold) for fold in folds]
        self.optimizers = [torch.optim.AdamW(m.parameters(), **ADAM) for m in self.modules]
        self.criterion = ExpertsNLLLoss()
        own = [mask[:, fold].nonzero().squeeze(1) for fold in range(mask.shape[1])]
        self.batches = [
            (X, y, mask[:, f]) if masked else ({m: x[rows] for m, x in X.items()}, y[rows], None)
            for f, rows in enumerate(own)
        ]

    def evaluate(self, l2):
        losses = []
        for module, optimizer, (X, y, weight) in zip(self.modules, self.optimizers, self.batches):
            optimizer.zero_grad()
            loss = self.criterion(module(**X), y, sample_weight=weight)
            if l2:
                loss = loss + 0.5 * l2 * module.squared_weight_norm()
            loss.backward()
            losses.append(loss.item())  # one read-back per fold, as each fold's net does
        return torch.tensor(losses, dtype=torch.float64)

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()

    def gradients(self):
        """``{parameter name: (n_folds, ...)}``, for the check."""
        named = [dict(m.named_parameters()) for m in self.modules]
        return {name: torch.stack([_grad(p[name]) for p in named]) for name in named[0]}


class Stacked:
    """Base of the batched methods: stacked parameters and buffers, one ``AdamW``."""

    def __init__(self, folds, X, y, mask):
        params, self.buffers = stack_module_state([copy.deepcopy(f) for f in folds])
        self.params = {name: p.detach().requires_grad_() for name, p in params.items()}
        self.optimizer = torch.optim.AdamW(self.params.values(), **ADAM)
        self.X, self.y, self.mask = X, y, mask

    def step(self):
        self.optimizer.step()

    def gradients(self):
        return {name: _grad(p) for name, p in self.params.items()}


class VmapFolds(Stacked):
    """``vmap(grad_and_value(per-fold loss))`` over the stacked parameters and buffers."""

    def __init__(self, folds, X, y, mask):
        super().__init__(folds, X, y, mask)
        base = copy.deepcopy(folds[0])
        criterion = ExpertsNLLLoss()

        def fold_loss(params, buffers, X, y, weight, l2):
            logits = functional_call(base, (params, buffers), (), X)
            loss = criterion(logits, y, sample_weight=weight)
            if l2:  # I2M2Module.squared_weight_norm on this fold's slice
                loss = loss + 0.5 * l2 * sum(
                    p.square().sum() for p in params.values() if p.ndim >= 2
                )
            return loss

        self.batched = vmap(grad_and_value(fold_loss), in_dims=(0, 0, None, None, 1, None))

    def evaluate(self, l2):
        self.optimizer.zero_grad()
        detached = {name: p.detach() for name, p in self.params.items()}
        grads, losses = self.batched(detached, self.buffers, self.X, self.y, self.mask, l2)
        for name, p in self.params.items():
            p.grad = grads[name]
        return losses.detach().cpu()


class GroupedFolds(Stacked):
    """Hand-batched layers: every fold's layer at once on the stacked weights.

    Vectors are ``(n_folds, n, features)``; images inside a conv encoder are
    ``(n, n_folds * channels, ...)``, each fold a group of channels.
    """

    def __init__(self, folds, X, y, mask):
        super().__init__(folds, X, y, mask)
        self.module = folds[0]
        # A module that two experts share (input scaling) is stacked under its first name.
        first = {}
        named = [
            *self.module.named_parameters(remove_duplicate=False),
            *self.module.named_buffers(remove_duplicate=False),
        ]
        self.canonical = {name: first.setdefault(id(t), name) for name, t in named}
        self.weight = mask.T.unsqueeze(1)  # (n_folds, 1, n): one weight per fold, expert, row
        self.forward(self.X)  # raises NotImplementedError before any timing

    def __getitem__(self, name):
        name = self.canonical[name]
        return self.params[name] if name in self.params else self.buffers[name]

    def forward(self, X):
        """Stacked expert logits, ``(n_folds, n_experts, n, n_classes)``."""
        if not isinstance(self.module, I2M2Module) or len(self.module.frozen):
            raise NotImplementedError(type(self.module).__name__)
        logits = []
        for name, expert in self.module.experts.items():
            prefix = f"experts.{name}."
            if isinstance(expert, IntraExpert):
                features = self.encoder(expert.encoder, X[expert.modality], prefix + "encoder.")
                logits.append(self.linear(features, prefix + "head."))
            elif isinstance(expert, InterExpert) and isinstance(expert.fusion, Concat):
                features = [
                    self.encoder(encoder, X[modality], f"{prefix}encoders.{modality}.")
                    for modality, encoder in expert.encoders.items()
                ]
                logits.append(self.layers(expert.head, torch.cat(features, -1), prefix + "head."))
            else:
                raise NotImplementedError(type(expert).__name__)
        return torch.stack(logits, 1)

    def linear(self, x, prefix):
        weight, bias = self[prefix + "weight"], self[prefix + "bias"]
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def encoder(self, encoder, x, prefix):
        """One encoder of every fold: unbatched rows ``x`` in, ``(n_folds, n, features)`` out."""
        if not isinstance(encoder, Encoder) or not isinstance(encoder.scaler, Standardize):
            raise NotImplementedError(type(encoder).__name__)
        mean, scale = self[prefix + "scaler.mean"], self[prefix + "scaler.scale"]
        x = (x - mean.unsqueeze(1)) / scale.unsqueeze(1)  # (n_folds, n, *sample)
        body = encoder.body
        if isinstance(body, MLP):
            return self.layers(body.net, x, prefix + "body.net.")
        if isinstance(body, ConvNet) and body.ndim == 2 and not body.add_channel_axis:
            n_folds, n = x.shape[:2]
            x = x.transpose(0, 1).reshape(n, -1, *x.shape[3:])
            return self.conv_layers(body.net, x, prefix + "body.net.", n_folds)
        raise NotImplementedError(type(body).__name__)

    def layers(self, sequential, x, prefix):
        for index, layer in enumerate(sequential):
            if isinstance(layer, nn.Linear):
                x = self.linear(x, f"{prefix}{index}.")
            elif isinstance(layer, nn.ReLU):
                x = F.relu(x)
            elif not isinstance(layer, nn.Identity):
                raise NotImplementedError(type(layer).__name__)
        return x

    def conv_layers(self, sequential, x, prefix, n_folds):
        for index, layer in enumerate(sequential):
            name = f"{prefix}{index}."
            if isinstance(layer, nn.Conv2d):
                weight = self[name + "weight"].flatten(0, 1)
                x = F.conv2d(x, weight, None, layer.stride, layer.padding, groups=n_folds)
            elif isinstance(layer, nn.BatchNorm2d):
                # Views of the stacked running statistics: updated in place, per fold.
                stats = [self[name + s].view(-1) for s in ("running_mean", "running_var")]
                affine = [self[name + s].flatten() for s in ("weight", "bias")]
                x = F.batch_norm(x, *stats, *affine, True, layer.momentum, layer.eps)
                self[name + "num_batches_tracked"].add_(1)
            elif isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity)):
                x = layer(x)
            elif isinstance(layer, nn.Flatten):
                return x.reshape(len(x), n_folds, -1).transpose(0, 1)
            else:
                raise NotImplementedError(type(layer).__name__)
        raise NotImplementedError("a conv encoder without Flatten")

    def evaluate(self, l2):
        self.optimizer.zero_grad()
        logits = self.forward(self.X)
        n_folds, n_experts, n, n_classes = logits.shape
        losses = F.cross_entropy(
            logits.reshape(-1, n_classes), self.y.repeat(n_folds * n_experts), reduction="none"
        ).view(n_folds, n_experts, n)
        # ExpertsNLLLoss per fold: the sum over experts of weighted means.
        losses = ((losses * self.weight).sum(-1) / self.weight.sum(-1)).sum(1)
        if l2:
            weights = [p for p in self.params.values() if p.ndim >= 3]
            losses = losses + 0.5 * l2 * sum(p.square().flatten(1).sum(1) for p in weights)
        losses.sum().backward()
        return losses.detach().cpu()


BATCHED = {"vmap": VmapFolds, "grouped": GroupedFolds}

# ----------------------------------------------------------------------
# Check and timing


def check(runners, l2):
    """Per method: ``"ok"``, or how its losses or gradients differ from ``loop, mask``'s."""
    reference = runners["loop, mask"]
    losses = reference.evaluate(l2)
    grads = reference.gradients()
    found = {"loop, mask": "reference"}
    for method, runner in runners.items():
        if runner is reference:
            continue
        other = runner.evaluate(l2)
        other_grads = runner.gradients()
        worst = max(
            [float((other - losses).abs().max())]
            + [float((other_grads[k].cpu() - g.cpu()).abs().max()) for k, g in grads.items()]
        )
        scale = max([1.0] + [float(g.abs().max()) for g in grads.values()])
        verdict = "ok" if worst <= TOLERANCE * scale else "differs"
        found[method] = f"{verdict} ({worst:.0e})"
    if not found["loop"].startswith("ok") and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in reference.modules[0].modules()
    ):
        found["loop"] += " (BatchNorm: batch statistics of its own rows only)"
    return found


def adam_step(runner, l2):
    """Forward, loss, backward and ``AdamW.step`` (its decoupled weight decay: no ``l2``)."""
    runner.evaluate(0.0)
    runner.step()


STEP_FUNCTIONS = {"adam": adam_step, "lbfgs": lambda runner, l2: runner.evaluate(l2)}


def build_runners(folds, X, y, mask):
    """``({method: runner}, {method: why it is left out})``."""
    runners, skipped = {}, {}
    for method in METHODS:
        try:
            if method.startswith("loop"):
                runners[method] = Loop(folds, X, y, mask, masked=method == "loop, mask")
            else:
                runners[method] = BATCHED[method](folds, X, y, mask)
        except NotImplementedError as exc:
            skipped[method] = f"not grouped: {exc}"
    return runners, skipped


def measure_set(name, device, threads):
    """Figures of one set: ``{"checks", "ms": {(threads, step, method): ms}, ...}``."""
    X, y, title = load_set(name)
    large = len(y) >= 1000
    closures = None if large else closure_share(X, y, device)
    folds, codes = fold_models(X, y)
    X, codes, mask = batch_and_mask(X, codes, large)
    X = {m: torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) for m, x in X.items()}
    codes = torch.as_tensor(codes, device=device)
    mask = torch.as_tensor(mask, device=device)
    folds = [fold.to(device) for fold in folds]
    l2 = 1.0 / len(y)  # weight_decay="auto" under L-BFGS: 1 / n_train
    # The check runs in float64: float32 rounding, which BatchNorm amplifies on
    # near-constant channels, would otherwise hide or fake a difference.
    as64 = [copy.deepcopy(fold).double() for fold in folds]
    X64 = {m: x.double() for m, x in X.items()}
    checks = check(build_runners(as64, X64, codes, mask.double())[0], l2)
    runners, skipped = build_runners(folds, X, codes, mask)
    checks.update(skipped)
    ms = {}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for step in STEPS:
            timed = {m: functools.partial(STEP_FUNCTIONS[step], r, l2) for m, r in runners.items()}
            for method, value in common.interleaved_medians(timed, device).items():
                ms[(n_threads, step, method)] = value
        for m in runners:
            adam, lbfgs = ms[(n_threads, "adam", m)], ms[(n_threads, "lbfgs", m)]
            print(f"{name:12s} {m:11s} {n_threads} thread(s)  adam {adam:8.2f} ms  ", end="")
            print(f"lbfgs closure {lbfgs:8.2f} ms  check {checks[m]}", flush=True)
    return {
        "name": name,
        "title": title,
        "rows": f"{len(codes)} of {len(y)}" if large else "all",
        "experts": len(folds[0].experts),
        "checks": checks,
        "ms": ms,
        "closures": closures,
    }


# ----------------------------------------------------------------------
# The section


def table(results, threads):
    columns = [(t, step) for t in threads for step in STEPS]
    header = " | ".join(f"{STEPS[step]}, {t} thread(s)" for t, step in columns)
    lines = [
        f"| set | rows per step | method | {header} | check |",
        "|---|---|---|" + "---|" * len(columns) + "---|",
    ]
    for result in results:
        for method in METHODS:
            cells = []
            for t, step in columns:
                ms = result["ms"].get((t, step, method))
                base = result["ms"][(t, step, "loop")]
                cells.append("—" if ms is None else f"{ms:.2f} ms ({base / ms:.2f}×)")
            lines.append(
                f"| {result['name']} | {result['rows']} | {method} | {' | '.join(cells)} "
                f"| {result['checks'][method]} |"
            )
    return lines


def reading(results, threads):
    """Bullets read off the figures: per thread count, the best batched method of each set."""
    lines = []
    for t in threads:
        cells = []
        for r in results:
            ms = r["ms"]
            best = [
                max((ms[(t, s, "loop")] / ms[(t, s, m)], m) for m in BATCHED if (t, s, m) in ms)
                for s in STEPS
            ]
            pays = min(best)[0] >= PAYS
            verdict = "pays" if pays else "loses" if max(best)[0] < 1.0 else "mixed"
            cells.append(f"`{r['name']}` {' / '.join(f'{m} {x:.2f}×' for x, m in best)} {verdict}")
        lines.append(
            f"- {t} thread(s), best batched method per step (AdamW / L-BFGS closure; pays: at "
            f"least {PAYS}× on both, loses: below 1× on both): " + "; ".join(cells) + "."
        )
    t = threads[-1]
    for r in (r for r in results if r["closures"]):
        (fit, calls, seconds, step_seconds), ms = r["closures"], r["ms"]
        x, m = max(
            (ms[(t, "lbfgs", "loop")] / ms[(t, "lbfgs", m)], m)
            for m in BATCHED
            if (t, "lbfgs", m) in ms
        )
        lines.append(
            f"- `{r['name']}`, default fit: {calls} L-BFGS closure evaluations (both stages) "
            f"take {seconds:.2f} s of {fit:.2f} s, and the optimizer's own bookkeeping "
            f"around them {step_seconds - seconds:.2f} s; {m} closures ({x:.2f}× at {t} "
            f"thread(s)) would save about {seconds * (1 - 1 / x):.2f} s at most, given a "
            "per-fold batched L-BFGS."
        )
    return lines


def section(results, threads, device, elapsed, load):
    load_text = f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end"
    sets = "; ".join(
        f"`{r['name']}`: {r['title']}, {r['experts']} experts per fold" for r in results
    )
    lines = [
        *common.section_start(
            "fold_batching",
            "The 5 fold models as one batched model: time of a stage-1 training step",
            common.script_command("fold_batching"),
            f"{elapsed / 60:.1f} min",
            machine=f"{common.machine_description()}; {load_text}",
        ),
        f"- device: `{device}`; thread counts: {', '.join(map(str, threads))}",
        f"- sets: {sets}",
        (
            "- protocol: the 5 fold models of `I2M2Classifier(random_state=0, max_epochs=1, "
            "finetune_epochs=1, cv=5)`, dropout removed; one stage-1 step of all 5, methods as "
            "in the script's docstring. Median ms per step, the methods taking turns; in "
            "brackets the speed-up over `loop`. Check: per-fold losses and gradients against "
            f"`loop, mask` to {TOLERANCE:g} (relative to the largest gradient entry, if above 1) "
            "in float64; in brackets the largest difference."
        ),
        "",
        *table(results, threads),
        "",
        *reading(results, threads),
        *CAVEATS,
        "<!-- fold_batching:end -->",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--threads", type=int, nargs="+", help="default: all cores, then 1")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=str(common.RESULTS), help="RESULTS.md to update")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or sorted({os.cpu_count() or 1, 1}, reverse=True)
    if device.type == "cuda" and not args.threads:
        threads = [torch.get_num_threads()]  # the host threads hardly matter there
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    results = [measure_set(name, device, threads) for name in args.sets]
    text = section(
        results, threads, device, time.perf_counter() - start, (load_start, os.getloadavg()[0])
    )
    print(text)
    if not args.no_write:
        common.write_results(text, args.output, name="fold_batching")
    failed = [f"{r['name']} {m}" for r in results for m in BATCHED if "differs" in r["checks"][m]]
    if failed:
        raise SystemExit(f"batched steps that differ from the loop's: {', '.join(failed)}")


if __name__ == "__main__":
    main()
