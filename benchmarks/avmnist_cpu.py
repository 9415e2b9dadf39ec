"""AV-MNIST-shaped training on the CPU: intra, inter and I2M2 with default settings.

AV-MNIST pairs a 28x28 digit image with a 112x112 spectrogram of the spoken
digit. This script builds a deterministic set of the same shapes offline
(:func:`make_avmnist_like`: scikit-learn's 8x8 digits upsampled and shifted
into 28x28 with noise; a spectrogram of two class-dependent tones with
jittered pitch, a random onset and noise), fits ``I2M2Classifier`` with
``dependencies="intra"``, ``"inter"`` and ``"both"`` (I2M2) on 4,000
training samples (early stopping on, every other parameter at its default)
and reports the wall time, CPU user and system time, minor page faults and
epochs of each fit and its test accuracy on 1,000 samples.

Two recipes are timed: ``separate`` trains each of the three models
anew; ``warm-start`` fits one estimator with ``warm_start=True`` in the
order I2M2, intra, inter, so that the two baselines keep the stage-1
experts the I2M2 fit trained (intra then runs its stage 2 only, inter
only its calibration). A second table measures one stage-1 epoch of
full-resolution conv experts (``Conv2dEncoder(first_stride=1)``) with and
without the allocator setting that ``fit`` applies on the CPU under glibc
(:mod:`sk_i2m2._allocator`): system time and page faults. A third
measures one stage-1 epoch of the default experts with the conv weights
contiguous and channels-last (the layout ``fit`` uses).

It writes its section of ``RESULTS.md`` next to this file (between the
``avmnist-cpu`` markers), whatever the working directory.

Usage, from the repository root::

    python -m benchmarks.avmnist_cpu                # both recipes and the two one-epoch tables
    python -m benchmarks.avmnist_cpu --recipes warm-start   # the target: <= 5 min on 2 cores
    python -m benchmarks.avmnist_cpu --quick        # 1,000 training samples, 5 epochs per stage
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import sk_i2m2._base
from benchmarks.common import (
    RESULTS,
    machine_description,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import I2M2Classifier, _allocator
from sk_i2m2.encoders import Conv2dEncoder

#: The fits of each recipe, in order: (dependencies, warm_start).
RECIPES = {
    "separate": [("intra", False), ("inter", False), ("both", False)],
    "warm-start": [("both", True), ("intra", True), ("inter", True)],
}


def make_avmnist_like(n_samples, seed=0):
    """``({"image": (n, 1, 28, 28), "audio": (n, 1, 112, 112)}, y)``, float32, 10 classes.

    Deterministic from ``seed``. Neither modality alone is easy (a linear
    model on the pixels gets far from all of them right), and they carry
    independent evidence about the class.
    """
    rng = np.random.RandomState(seed)
    digits = load_digits()
    y = rng.randint(0, 10, n_samples)
    by_class = [np.flatnonzero(digits.target == c) for c in range(10)]
    source = digits.images[[rng.choice(by_class[c]) for c in y]] / 16.0
    upsampled = source.repeat(3, axis=1).repeat(3, axis=2)  # 24 x 24
    image = np.zeros((n_samples, 28, 28), np.float32)
    shifts = rng.randint(0, 5, (n_samples, 2))
    for i, (dy, dx) in enumerate(shifts):
        image[i, dy : dy + 24, dx : dx + 24] = upsampled[i]
    image += rng.normal(0, 0.6, image.shape).astype(np.float32)

    # Two tones (8 kHz sampling): a class-dependent pitch with jitter and its
    # jittered octave, from a random onset, in white noise; 112 frames of a
    # 222-point FFT (112 frequency bins).
    n_fft, hop, n_frames = 222, 64, 112
    length = n_fft + hop * (n_frames - 1)
    t = np.arange(length) / 8000.0
    pitch = 300 + 150 * y + rng.normal(0, 60, n_samples)
    octave = 2 * pitch + rng.normal(0, 120, n_samples)
    onset = rng.randint(0, length // 2, n_samples)
    audio = np.empty((n_samples, 112, 112), np.float32)
    window = np.hanning(n_fft)
    for start in range(0, n_samples, 500):  # bounded memory
        rows = slice(start, start + 500)
        on = np.arange(length)[None, :] >= onset[rows, None]
        phase = rng.uniform(0, 2 * np.pi, (len(y[rows]), 1))
        signal = on * (
            np.sin(2 * np.pi * pitch[rows, None] * t + phase)
            + 0.5 * np.sin(2 * np.pi * octave[rows, None] * t)
        )
        signal = 0.25 * signal + rng.normal(0, 1.0, signal.shape)
        frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft, axis=1)[:, ::hop]
        spectrum = np.abs(np.fft.rfft(frames[:, :n_frames] * window, axis=2))[:, :, :112]
        audio[rows] = np.log1p(spectrum).transpose(0, 2, 1)
    return {"image": image[:, None], "audio": audio[:, None]}, y


def _usage():
    return resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()


def _spent(before):
    (r0, t0), (r1, t1) = before, _usage()
    return {
        "wall": t1 - t0,
        "user": r1.ru_utime - r0.ru_utime,
        "sys": r1.ru_stime - r0.ru_stime,
        "minflt": r1.ru_minflt - r0.ru_minflt,
    }


def fit_recipe(X_train, y_train, X_test, y_test, recipe, max_epochs):
    """Fit the recipe's models in order, one estimator per recipe; one run record per fit."""
    params = {} if max_epochs is None else {"max_epochs": max_epochs}
    clf = I2M2Classifier(random_state=0, **params)
    for dependencies, warm_start in RECIPES[recipe]:
        clf.set_params(dependencies=dependencies, warm_start=warm_start)
        before = _usage()
        clf.fit(X_train, y_train)
        run = _spent(before)
        nets = [clf.pretrain_net_, clf.finetune_net_]
        run.update(
            recipe=recipe,
            dependencies=dependencies,
            epochs=[len(net.history) if net is not None else 0 for net in nets],
            accuracy=clf.score(X_test, y_test),
        )
        yield run


def allocator_epoch(X_train, y_train, use_allocator):
    """Usage of one stage-1 epoch of full-resolution experts (I2M2), with or without the setting."""
    glibc = _allocator._glibc
    if not use_allocator:
        _allocator._glibc = lambda: None
    try:
        clf = I2M2Classifier(
            encoders={
                "image": Conv2dEncoder(first_stride=1),
                "audio": Conv2dEncoder(first_stride=1),
            },
            max_epochs=1,
            finetune_epochs=0,
            random_state=0,
        )
        before = _usage()
        clf.fit(X_train, y_train)
        return _spent(before)
    finally:
        _allocator._glibc = glibc


def layout_epoch(X_train, y_train, channels_last):
    """Seconds of one stage-1 epoch of the default I2M2 experts, conv weights in either layout.

    The fastest of three epochs, so that the first epoch's set-up is left out.
    """
    to_channels_last = sk_i2m2._base.to_channels_last
    if not channels_last:
        sk_i2m2._base.to_channels_last = lambda module: None
    try:
        clf = I2M2Classifier(max_epochs=3, finetune_epochs=0, early_stopping=False, random_state=0)
        clf.fit(X_train, y_train)
        return min(row["dur"] for row in clf.pretrain_net_.history)
    finally:
        sk_i2m2._base.to_channels_last = to_channels_last


def results_section(
    runs, epoch_runs, layout, *, command, elapsed, n_train, n_test, max_epochs, load
):
    budget = "defaults" if max_epochs is None else f"`max_epochs={max_epochs}`"
    lines = [
        *section_start(
            "avmnist-cpu",
            "AV-MNIST shapes on the CPU: intra, inter and I2M2 with default settings",
            command,
            f"{elapsed / 60:.1f} min",
            machine=f"{machine_description()}; {torch.get_num_threads()} torch thread(s); "
            f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end",
        ),
        (
            f"- protocol: `make_avmnist_like` in `benchmarks/avmnist_cpu.py` ({n_train} "
            f"training and {n_test} test samples of a (1, 28, 28) image and a (1, 112, 112) "
            "spectrogram, 10 classes); `I2M2Classifier(dependencies=..., random_state=0)`, "
            f"early stopping on, epochs: {budget}. `separate`: each model trained "
            "anew; `warm-start`: one estimator with `warm_start=True`, fitted "
            "as I2M2, then intra, then inter (stage 1 of the baselines keeps the I2M2 fit's "
            "experts). Epochs of stage 1 count until the last expert stopped. CPU times are "
            "user + system of the whole process (torch's threads included)."
        ),
        "",
        "| recipe | model | test accuracy | fit wall (s) | CPU user + sys (s) "
        "| minor page faults | epochs (stage 1 + 2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['recipe']} | {run['dependencies']} | {run['accuracy']:.4f} "
            f"| {run['wall']:.1f} | {run['user']:.1f} + {run['sys']:.1f} "
            f"| {run['minflt']:,} | {run['epochs'][0]} + {run['epochs'][1]} |"
        )
    for recipe in dict.fromkeys(run["recipe"] for run in runs):
        total = sum(run["wall"] for run in runs if run["recipe"] == recipe)
        lines.append(f"| {recipe} | **intra + inter + I2M2** | | **{total:.1f}** | | | |")
    if epoch_runs:
        lines += [
            "",
            "One stage-1 epoch of full-resolution I2M2 experts "
            "(`Conv2dEncoder(first_stride=1)`), with and without the glibc allocator "
            "thresholds `fit` raises on the CPU:",
            "",
            "| allocator setting | wall (s) | CPU user (s) | CPU system (s) | minor page faults |",
            "|---|---|---|---|---|",
        ]
        for name, run in epoch_runs.items():
            lines.append(
                f"| {name} | {run['wall']:.1f} | {run['user']:.1f} | {run['sys']:.1f} "
                f"| {run['minflt']:,} |"
            )
    if layout:
        lines += [
            "",
            "One stage-1 epoch of the default I2M2 experts (the fastest of three), with the "
            "conv weights in the default layout and channels-last (what `fit` uses):",
            "",
            "| conv layout | epoch (s) |",
            "|---|---|",
            *(f"| {name} | {seconds:.2f} |" for name, seconds in layout.items()),
        ]
    lines += ["<!-- avmnist-cpu:end -->", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 training samples, max_epochs=5")
    parser.add_argument("--n-train", type=int, default=None, help="default 4000 (1000 quick)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the estimator's")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument(
        "--no-allocator-table", action="store_true", help="skip the one-epoch allocator table"
    )
    parser.add_argument(
        "--no-layout-table", action="store_true", help="skip the one-epoch conv layout table"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    n_train = args.n_train or (1000 if args.quick else 4000)
    max_epochs = args.max_epochs or (5 if args.quick else None)

    X, y = make_avmnist_like(n_train + args.n_test)
    X_train = {m: v[:n_train] for m, v in X.items()}
    X_test = {m: v[n_train:] for m, v in X.items()}
    y_train, y_test = y[:n_train], y[n_train:]
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    # First, while glibc still has its own settings in this process.
    epoch_runs = {}
    if not args.no_allocator_table:
        for name, use in [("glibc defaults", False), ("raised during fit", True)]:
            epoch_runs[name] = allocator_epoch(X_train, y_train, use)
            print(f"one epoch, {name}: {epoch_runs[name]}", flush=True)
    layout = {}
    if not args.no_layout_table:
        for name, channels_last in [("contiguous (NCHW)", False), ("channels-last", True)]:
            layout[name] = layout_epoch(X_train, y_train, channels_last)
            print(f"one epoch, {name}: {layout[name]:.2f} s", flush=True)
    runs = []
    for recipe in args.recipes:
        for run in fit_recipe(X_train, y_train, X_test, y_test, recipe, max_epochs):
            runs.append(run)
            print(
                f"{recipe:10s} {run['dependencies']:5s} accuracy {run['accuracy']:.4f}  "
                f"wall {run['wall']:.1f} s  user {run['user']:.1f} s  sys {run['sys']:.1f} s  "
                f"minflt {run['minflt']}  epochs {run['epochs']}",
                flush=True,
            )
    section = results_section(
        runs,
        epoch_runs,
        layout,
        command=script_command("avmnist_cpu"),
        elapsed=time.perf_counter() - start,
        n_train=n_train,
        n_test=args.n_test,
        max_epochs=max_epochs,
        load=(load_start, os.getloadavg()[0]),
    )
    print(section)
    if not args.no_write:
        write_results(section, RESULTS, name="avmnist-cpu")


if __name__ == "__main__":
    main()
