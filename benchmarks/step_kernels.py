"""Kernels of a training step on the CPU: AdamW, the class log-softmax, a conv feature pool, the linear solve.

Run from the repository root::

    python -m benchmarks.step_kernels
    python -m benchmarks.step_kernels --seeds 0 1 2 3 4 --no-write

Five measurements, with the 1-minute load average of the machine before and after:

- **AdamW update**: one ``optimizer.step()`` with ``foreach=True`` (sk-i2m2's
  former CPU choice) and with ``fused=True`` (its choice now, see
  ``sk_i2m2.training.net.optimizer_speed_kwargs``), on the parameters of
  one fold model of the digits image+table set (a conv image expert, a
  linear table expert and a conv + linear inter expert) and on 4 million
  parameters (four 1024x1024 matrices); with one thread and with torch's
  default count.
- **Class log-softmax**: forward and backward of the summed cross-entropy
  of experts' logits (one thread), the softmax over the classes as the
  last axis (torch's layout) and laid out first
  (``sk_i2m2.nn.product.class_log_proba`` with few classes), at the
  shapes of a small cohort's linear solve (float64) and of training
  batches (float32).
- **Conv expert step**: forward and backward of the digits image expert's
  conv net (``Conv2dEncoder`` on 8x8 images, 64 rows, channels-last as in
  a fit, one thread), its final feature pool as
  ``sk_i2m2.nn.encoder_modules.FeaturePool2d`` (which passes a 2x2 input
  through) and as ``torch.nn.AdaptiveAvgPool2d``.
- **Linear solve evaluation**: the loss and gradient of the small-cohort
  linear experts' joint solve (``sk_i2m2.training.linear_experts``: every
  expert of 5 fold models, float64, one thread), each expert's logits as
  the product of its features and weights laid out rows first (``(rows x
  features) @ (features x classes)``, the former layout) and outputs first
  (``(classes x features) @ (features x rows)``, the solver's layout now),
  at the shapes of three small-cohort sets.
- **Fits**: ``I2M2Classifier(random_state=seed)`` with default settings on
  sets of ``benchmarks/small_cohorts.py``, with the kernels as they are now
  and as they were (``foreach`` AdamW, classes last, torch's pool), taking
  turns; mean fit time and test accuracy over the seeds. Both solve the
  linear experts outputs first.

The section between ``<!-- step_kernels:start -->`` and
``<!-- step_kernels:end -->`` of ``benchmarks/RESULTS.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch
from torch import nn

from benchmarks import common
from benchmarks.small_cohorts import load_split

SECTION = "step_kernels"
FIT_SETS = (
    "bc-80",
    "bc-569",
    "mfeat-fou-zer-300",
    "synthetic-mixed-100",
    "digits-150",
    "digits-300",
)
#: (experts x rows, classes, dtype, what the shape is)
LOSS_SHAPES = (
    (10, 210, 10, torch.float64, "mfeat-300 linear solve: 2 experts x 5 folds"),
    (15, 398, 2, torch.float64, "breast cancer n=569 linear solve: 3 experts x 5 folds"),
    (4, 56, 2, torch.float32, "breast cancer n=80 stage closure: 4 experts"),
    (4, 128, 2, torch.float32, "batch of 128, 2 classes, 4 experts"),
    (4, 128, 10, torch.float32, "batch of 128, 10 classes, 4 experts"),
)

#: (feature widths of the linear experts, rows, classes, what the shape is), 5 folds
SOLVE_SHAPES = (
    ((76, 47), 210, 10, "mfeat fou+zer n=300: 2 experts x 5 folds"),
    ((10, 10, 10), 398, 2, "breast cancer n=569: 3 experts x 5 folds"),
    ((10, 10, 10), 56, 2, "breast cancer n=80: 3 experts x 5 folds"),
)
SOLVE_FOLDS = 5


def _median_ms(step, repeats):
    return 1e3 * common.median_seconds(step, repeats, warm=10)


def _fold_parameters():
    """The parameters of one fold model of digits-300 (seed 0), as a fit builds it."""
    from sk_i2m2 import I2M2Classifier

    X, _, y, _ = load_split("digits-300", 0)
    clf = I2M2Classifier(max_epochs=1, finetune_epochs=1, random_state=0).fit(X, y)
    return [
        p.detach().clone().requires_grad_(True) for p in clf.fold_nets_[0][1].module_.parameters()
    ]


def adamw_rows(thread_counts, repeats):
    """``(parameters, threads, foreach ms, fused ms)`` of one AdamW step."""
    cases = [
        ("one digits-300 fold model", _fold_parameters()),
        (
            "4 x 1024x1024 (4.2 M)",
            [torch.randn(1024, 1024, requires_grad=True) for _ in range(4)],
        ),
    ]
    rows = []
    with common.torch_threads():
        for name, params in cases:
            for p in params:
                p.grad = torch.randn_like(p)
            n = sum(p.numel() for p in params)
            for threads in thread_counts:
                torch.set_num_threads(threads)
                ms = [
                    _median_ms(torch.optim.AdamW(params, lr=1e-3, **kwargs).step, repeats)
                    for kwargs in ({"foreach": True}, {"fused": True})
                ]
                rows.append((f"{name}: {len(params)} tensors, {n:,} values", threads, *ms))
    return rows


def _classes_last(logits):
    return nn.functional.log_softmax(logits, dim=-1)


def _classes_first(logits):
    return logits.transpose(-1, -2).log_softmax(-2).transpose(-1, -2)


def loss_rows(repeats):
    """``(shape, what, classes-last ms, classes-first ms)`` of the experts' cross-entropy."""
    rows = []
    with common.torch_threads(1):
        for experts, n, classes, dtype, what in LOSS_SHAPES:
            logits = torch.randn(experts, n, classes, dtype=dtype, requires_grad=True)
            y = torch.randint(0, classes, (n,)).expand(experts, n).unsqueeze(-1)
            ms = [
                _median_ms(
                    lambda layout=layout, logits=logits, y=y: (
                        (-layout(logits).gather(-1, y)).sum().backward()
                    ),
                    repeats,
                )
                for layout in (_classes_last, _classes_first)
            ]
            rows.append((f"{experts} x {n} x {classes}, {str(dtype)[6:]}", what, *ms))
    return rows


def _solve_evaluation(widths, n, classes, outputs_first):
    """One loss-and-gradient evaluation of a linear solve, as a callable."""
    from sk_i2m2.nn.product import class_nll

    generator = torch.Generator().manual_seed(0)
    blocks = [
        torch.randn(SOLVE_FOLDS, n, width, dtype=torch.float64, generator=generator)
        for width in widths
    ]
    parts = [slice(first, first + w) for first, w in zip(np.cumsum([0, *widths[:-1]]), widths)]
    y = torch.randint(0, classes, (n,), generator=generator)
    bias = torch.zeros(SOLVE_FOLDS, len(widths), classes, dtype=torch.float64, requires_grad=True)
    if outputs_first:
        shape = (SOLVE_FOLDS, classes, sum(widths))
        blocks = [block.transpose(1, 2).contiguous() for block in blocks]
    else:
        shape = (SOLVE_FOLDS, sum(widths), classes)
    weight = (0.1 * torch.randn(shape, dtype=torch.float64, generator=generator)).requires_grad_()

    def evaluate():
        weight.grad = bias.grad = None
        if outputs_first:
            logits = torch.stack([torch.bmm(weight[:, :, p], b) for b, p in zip(blocks, parts)])
            logits = logits + bias.transpose(0, 1).unsqueeze(3)
            logits = logits.reshape(-1, classes, n).transpose(1, 2)
        else:
            logits = torch.stack(
                [torch.einsum("knf,kfc->knc", b, weight[:, p]) for b, p in zip(blocks, parts)]
            )
            logits = (logits + bias.transpose(0, 1).unsqueeze(2)).reshape(-1, n, classes)
        class_nll(logits, y).sum().backward()

    return evaluate


def solve_rows(repeats):
    """``(shape, what, rows-first ms, outputs-first ms)`` of a linear solve's evaluation."""
    rows = []
    with common.torch_threads(1):
        for widths, n, classes, what in SOLVE_SHAPES:
            ms = [
                _median_ms(_solve_evaluation(widths, n, classes, outputs_first), repeats)
                for outputs_first in (False, True)
            ]
            copies = SOLVE_FOLDS * len(widths)
            shape = f"{copies} x {n} x {classes}, features {'+'.join(map(str, widths))}"
            rows.append((shape, what, *ms))
    return rows


def conv_step_rows(repeats):
    """``(pool, ms)`` of a training step of the digits image expert's conv net."""
    from sk_i2m2.encoders import Conv2dEncoder
    from sk_i2m2.nn.encoder_modules import FeaturePool2d

    rows = []
    with common.torch_threads(1):
        for label, pool in (
            ("FeaturePool2d (passes 2x2 through)", None),
            ("torch.nn.AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d),
        ):
            torch.manual_seed(0)
            net = Conv2dEncoder().build((1, 8, 8))
            if pool is not None:
                for i, layer in enumerate(net.net):
                    if isinstance(layer, FeaturePool2d):
                        net.net[i] = pool(layer.output_size)
            net = net.to(memory_format=torch.channels_last)
            head = nn.Linear(net.out_features, 10)
            x = torch.randn(64, 1, 8, 8).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (64,))

            def step(net=net, head=head, x=x, y=y):
                nn.functional.cross_entropy(head(net(x)), y).backward()

            rows.append((label, _median_ms(step, repeats)))
    return rows


FORMER_KERNELS = {
    "sk_i2m2.training.stages.optimizer_speed_kwargs": lambda optimizer, device: (
        {"foreach": True} if "AdamW" in optimizer.__name__ else {}
    ),
    "sk_i2m2.nn.encoder_modules.FeaturePool2d": nn.AdaptiveAvgPool2d,
    "sk_i2m2.nn.product.FEW_CLASSES": 0,
}


def fit_rows(seeds):
    """``(set, kernels, mean fit s, mean accuracy)``: kernels now and as they were, in turns."""
    from sk_i2m2 import I2M2Classifier

    common.warm_up()
    rows = []
    for name in FIT_SETS:
        results = {"now": ([], []), "former": ([], [])}
        for seed in seeds:
            X_train, X_test, y_train, y_test = load_split(name, seed)
            for kernels in ("now", "former"):
                with common.patched(FORMER_KERNELS if kernels == "former" else None):
                    clf = I2M2Classifier(random_state=seed)
                    gc.collect()  # no fit pays for garbage the other one left
                    start = time.perf_counter()
                    clf.fit(X_train, y_train)
                    seconds = time.perf_counter() - start
                    accuracy = clf.score(X_test, y_test)
                results[kernels][0].append(seconds)
                results[kernels][1].append(accuracy)
        for kernels, (seconds, accuracy) in results.items():
            rows.append((name, kernels, float(np.mean(seconds)), float(np.mean(accuracy))))
    return rows


def _table(header, rows):
    """A blank line, then a markdown table of ``header`` and ``rows``."""
    lines = ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _layouts_table(title, former, now, rows):
    """A table of ``(shape, what, former ms, now ms)`` rows of two layouts, and their ratio."""
    return _table(
        (title, "shape", f"{former} (ms)", f"{now} (ms)", f"{former} / {now}"),
        [(what, shape, f"{a:.3f}", f"{b:.3f}", f"{a / b:.2f}x") for shape, what, a, b in rows],
    )


def section(adamw, losses, conv, solves, fits, seeds, duration, load):
    lines = common.section_start(
        SECTION,
        "Training-step kernels on the CPU: fused AdamW, the class log-softmax, a conv feature "
        "pool, the linear solve's layout",
        common.script_command("step_kernels"),
        duration=f"{duration / 60:.1f} min",
    )
    lines += [
        f"- machine load: 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after",
        "- protocol: median of timed repeats. Fits: `I2M2Classifier(random_state=seed)` "
        f"defaults, seeds {', '.join(map(str, seeds))}, the splits of "
        "`benchmarks/small_cohorts.py`, a garbage collection before each; `former` is "
        "`foreach` AdamW, the class log-softmax over the last axis and torch's "
        "`AdaptiveAvgPool2d`, `now` the fused AdamW, `class_log_proba` and `FeaturePool2d`, "
        "fitted in turns; both solve the linear experts outputs first.",
    ]
    lines += _table(
        ("AdamW step on", "threads", "foreach (ms)", "fused (ms)", "foreach / fused"),
        [
            (name, threads, f"{foreach:.3f}", f"{fused:.3f}", f"{foreach / fused:.1f}x")
            for name, threads, foreach, fused in adamw
        ],
    )
    lines += _layouts_table(
        "experts' cross-entropy, forward + backward (1 thread)",
        "classes last",
        "classes first",
        losses,
    )
    lines += _table(
        ("digits image expert, training step of 64 rows (1 thread)", "ms"),
        [(label, f"{ms:.3f}") for label, ms in conv],
    )
    lines += _layouts_table(
        "linear solve, loss + gradient (1 thread)", "rows first", "outputs first", solves
    )
    lines += _table(
        ("data set", "kernels", "fit (s)", "test accuracy"),
        [
            (name, kernels, f"{seconds:.3f}", f"{accuracy:.3f}")
            for name, kernels, seconds, accuracy in fits
        ],
    )
    lines += [f"<!-- {SECTION}:end -->", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=str(common.RESULTS), help="RESULTS.md to update")
    args = parser.parse_args(argv)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    thread_counts = sorted({1, torch.get_num_threads()})
    adamw = adamw_rows(thread_counts, args.repeats)
    losses = loss_rows(args.repeats)
    conv = conv_step_rows(args.repeats)
    solves = solve_rows(args.repeats)
    fits = fit_rows(args.seeds)
    load = (load_before, os.getloadavg()[0])
    text = section(adamw, losses, conv, solves, fits, args.seeds, time.perf_counter() - start, load)
    print(text)
    if not args.no_write:
        common.write_results(text, args.output, name=SECTION)


if __name__ == "__main__":
    main()
