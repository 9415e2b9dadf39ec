"""Prediction latency on the CPU: onnxruntime on the exported model against torch.

Two fitted ``I2M2Classifier`` models (default settings, few epochs):
two vector views of the UCI Multiple Features digits (``fou``, ``zer``),
and an image + sequence model on generated data of AV-MNIST shapes
(``(1, 28, 28)`` images, ``(20, 8)`` sequences). Each is exported with
:func:`sk_i2m2.to_onnx` and timed on one sample and on a batch of 256 rows:

- ``predict_proba``: the estimator's own call (input validation included);
- ``torch module``: the fitted module, its product and temperature, under
  ``torch.no_grad()`` (what the ONNX graph computes, in torch);
- ``onnxruntime``: ``InferenceSession.run`` on the exported file.

Medians over repeated calls after warm-up, one thread for torch and
onnxruntime alike (``--threads``). The largest difference between
onnxruntime's and ``predict_proba``'s probabilities is reported too.

It writes its section of ``RESULTS.md`` next to this file (between the
``onnx-latency`` markers), whatever the working directory.

Usage, from the repository root::

    python -m benchmarks.onnx_latency                 # about a minute
    python -m benchmarks.onnx_latency --no-write      # print only
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import sk_i2m2
from benchmarks.common import (
    RESULTS,
    machine_description,
    median_seconds,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat
from sk_i2m2.nn.product import combine

BATCH = 256


def image_sequence_data(n=1000, seed=0):
    """Ten classes of AV-MNIST shapes: class-shifted noise images and sequences."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 10
    image = rng.randn(n, 1, 28, 28).astype(np.float32) + 0.3 * y[:, None, None, None]
    sequence = rng.randn(n, 20, 8).astype(np.float32) + 0.2 * y[:, None, None]
    return {"image": image, "sequence": sequence}, y


def time_model(name, clf, X, threads):
    """Latencies (ms) of the three paths on one row and on BATCH rows."""
    with tempfile.TemporaryDirectory() as directory:
        path = sk_i2m2.to_onnx(clf, Path(directory) / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    module = clf.module_.eval()
    rows = {}
    for label, n, repeats in (("1 sample", 1, 200), (f"batch of {BATCH}", BATCH, 30)):
        Xn = {m: np.ascontiguousarray(v[:n], dtype=np.float32) for m, v in X.items()}
        tensors = {m: torch.from_numpy(v) for m, v in Xn.items()}

        def forward(tensors=tensors):
            with torch.no_grad():
                return combine(module(**tensors) / clf.temperature_).exp()

        proba = session.run(None, Xn)[0]
        error = float(np.abs(proba - clf.predict_proba(Xn)).max())
        rows[label] = {
            "predict_proba": 1e3 * median_seconds(lambda Xn=Xn: clf.predict_proba(Xn), repeats),
            "torch module": 1e3 * median_seconds(forward, repeats),
            "onnxruntime": 1e3 * median_seconds(lambda Xn=Xn: session.run(None, Xn), repeats),
            "error": error,
        }
    return name, rows


def results_section(results, *, command, threads, elapsed):
    lines = [
        *section_start(
            "onnx-latency",
            "ONNX export: prediction latency, onnxruntime against torch on the CPU",
            command,
            f"{elapsed:.0f} s",
            machine=f"{machine_description()}; onnxruntime {ort.__version__}",
        ),
        f"- protocol: {threads} thread(s) for torch and onnxruntime alike; median over 200 "
        f"single-sample calls and 30 calls on {BATCH} rows, after 3 warm-up calls. "
        "`predict_proba` is the estimator's call (input checks included), `torch module` "
        "the fitted module + product + temperature under `no_grad`, `onnxruntime` the "
        "exported file. Max abs diff: onnxruntime's probabilities against `predict_proba`.",
        "",
        "| model | rows | predict_proba (ms) | torch module (ms) | onnxruntime (ms) "
        "| speed-up over torch module | max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results:
        for label, row in rows.items():
            lines.append(
                f"| {name} | {label} | {row['predict_proba']:.3f} | {row['torch module']:.3f} "
                f"| {row['onnxruntime']:.3f} | {row['torch module'] / row['onnxruntime']:.1f}x "
                f"| {row['error']:.1e} |"
            )
    lines.append("<!-- onnx-latency:end -->")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = []
    X, y = load_mfeat(["fou", "zer"])
    clf = I2M2Classifier(max_epochs=args.max_epochs, random_state=0).fit(X, y)
    results.append(time_model("mfeat fou+zer (2 vectors, MLP experts)", clf, X, args.threads))
    X, y = image_sequence_data()
    clf = I2M2Classifier(max_epochs=args.max_epochs, random_state=0).fit(X, y)
    results.append(time_model("image 1x28x28 + sequence 20x8 (conv, GRU)", clf, X, args.threads))
    section = results_section(
        results,
        command=script_command("onnx_latency"),
        threads=args.threads,
        elapsed=time.perf_counter() - start,
    )
    print(section)
    if not args.no_write:
        write_results(section, RESULTS, name="onnx-latency")


if __name__ == "__main__":
    main()
