"""Throughput and memory of modalities read a batch at a time (out-of-core).

Throughput: ``I2M2Classifier.fit`` (two vector modalities, MLP experts and
the inter expert, ``early_stopping=False``, fixed batch size) on the same
data held in memory (numpy arrays: the whole-tensor fast path) and read
lazily from a ``numpy.memmap``, an HDF5 file (h5py) and one ``.npy`` file per
sample (:class:`sk_i2m2.FileModality`, with 0 and 2 loader workers), on the
CPU. Reported: training samples per second (samples x epochs / fit time) and
the ratio to the in-memory path.

Memory: a child process writes a float32 memmap of ``--memory-mb`` in chunks,
fits one epoch on it (linear expert) and predicts, and reports the peak of its
anonymous memory (``RssAnon`` from ``/proc/self/status``, polled every 2 ms,
over its value after a small warm-up fit) and of ``VmHWM`` (which also counts
the memmap's page cache, file-backed and droppable), against the data size.
glibc's mmap threshold is fixed at 1 MiB in the child, so that freed buffers
are not counted as held (see ``tests/test_lazy.py``).

It writes its section of ``RESULTS.md`` next to this file (between the
``out-of-core`` markers), whatever the working directory.

Usage, from the repository root::

    python -m benchmarks.out_of_core               # 20000 x 2 x 512 floats, 3 epochs, 1.5 GB memmap
    python -m benchmarks.out_of_core --n 2000 --features 32 --epochs 1 --memory-mb 50 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    RESULTS,
    machine_description,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import FileModality, I2M2Classifier

ROOT = Path(__file__).resolve().parents[1]


def make_data(n, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = {m: rng.standard_normal((n, n_features), dtype=np.float32) for m in ("a", "b")}
    y = ((X["a"][:, 0] > 0) ^ (X["b"][:, 0] > 0)).astype(np.int64)
    return X, y


def layouts(X, folder, with_h5py):
    """Name -> (X as that layout, a callable that closes it)."""
    out = {"in memory (numpy)": (X, lambda: None)}
    memmaps = {}
    for m, value in X.items():
        path = folder / f"{m}.f32"
        mm = np.memmap(path, np.float32, "w+", shape=value.shape)
        mm[:] = value
        mm.flush()
        memmaps[m] = np.memmap(path, np.float32, "r", shape=value.shape)
    out["numpy.memmap"] = (memmaps, lambda: None)
    if with_h5py:
        import h5py

        with h5py.File(folder / "data.h5", "w") as f:
            for m, value in X.items():
                f[m] = value
        handle = h5py.File(folder / "data.h5", "r")
        out["HDF5 (h5py)"] = ({m: handle[m] for m in X}, handle.close)
    paths = {}
    for m, value in X.items():
        (folder / m).mkdir()
        paths[m] = [folder / m / f"{i}.npy" for i in range(len(value))]
        for path, row in zip(paths[m], value):
            np.save(path, row)
    for workers in (0, 2):
        files = {m: FileModality(paths[m], np.load, num_workers=workers) for m in X}
        out[f"files (.npy per sample, {workers} workers)"] = (files, lambda: None)
    return out


def throughput(X, y, epochs, batch_size):
    clf = I2M2Classifier(
        max_epochs=epochs,
        finetune_epochs=0,
        early_stopping=False,
        batch_size=batch_size,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    return len(y) * epochs / seconds, seconds


MEMORY_CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from sk_i2m2 import I2M2Classifier
    from sk_i2m2.encoders import MLPEncoder

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

    path, n, n_features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    data = np.memmap(path, np.float32, "w+", shape=(n, n_features))
    y = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):
        block = rng.standard_normal((min(4096, n - start), n_features), dtype=np.float32)
        y[start : start + len(block)] = block[:, 0] + block[:, 1] > 0
        data[start : start + len(block)] = block
    data.flush()
    del data, block
    X = {"x": np.memmap(path, np.float32, "r", shape=(n, n_features))}
    clf = I2M2Classifier(max_epochs=1, encoders={"x": MLPEncoder(hidden_sizes=())},
                         batch_size=512, lr=1e-2, random_state=0)
    small = {"x": np.asarray(X["x"][:2000])}
    clf.fit(small, y[:2000]).predict(small)
    del small
    baseline = peak = status("RssAnon")
    done = False
    def watch():
        global peak
        while not done:
            peak = max(peak, status("RssAnon"))
            time.sleep(0.002)
    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    clf.fit(X, y)
    accuracy = float((clf.predict(X) == y).mean())
    seconds = time.perf_counter() - start
    done = True
    watcher.join()
    print(json.dumps(dict(baseline=baseline, peak=peak, hwm=status("VmHWM"),
                          accuracy=accuracy, seconds=seconds)))
    """
)


def peak_memory(memory_mb, n_features=1000):
    n = max(1, int(memory_mb * 2**20) // (4 * n_features))
    with tempfile.TemporaryDirectory() as folder:
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_CHILD,
                str(Path(folder) / "x.f32"),
                str(n),
                str(n_features),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "MALLOC_MMAP_THRESHOLD_": str(2**20),
            },
            check=False,
        )
    if run.returncode:
        raise RuntimeError(run.stderr[-3000:])
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(n=n, n_features=n_features, data_bytes=4 * n * n_features)
    return result


def results_section(rows, memory, *, args, command, elapsed, load):
    reference = rows[0][1]
    mib = 2**20
    lines = [
        *section_start(
            "out-of-core",
            "Out-of-core: modalities read a batch at a time",
            command,
            f"{elapsed / 60:.1f} min",
            machine=f"{machine_description()}; {torch.get_num_threads()} torch thread(s); "
            f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
            "(the machine is shared, so times are indicative)",
        ),
        (
            f"- protocol: two vector modalities of {args.features} float32 features, "
            f"{args.n} samples (XOR labels); `I2M2Classifier(max_epochs={args.epochs}, "
            f"finetune_epochs=0, early_stopping=False, batch_size={args.batch_size}, "
            'device="cpu")` (MLP experts and the inter expert); throughput = samples × '
            "epochs / fit time, which includes validation and input statistics (one chunked "
            "pass each, plus a second for the statistics of lazy data)."
        ),
        "",
        "| data layout | samples / s | fit time (s) | vs in memory |",
        "|---|---|---|---|",
        *(
            f"| {name} | {rate:.0f} | {seconds:.1f} | {rate / reference:.2f} |"
            for name, rate, seconds in rows
        ),
        "",
    ]
    if memory is not None:
        lines += [
            (
                f"Peak memory of one epoch of `fit` + `predict` on a float32 `numpy.memmap` of "
                f"{memory['n']} × {memory['n_features']} ({memory['data_bytes'] / mib:.0f} MiB), "
                "linear expert, batch 512, in a child process:"
            ),
            "",
            "| data | peak anonymous memory (RssAnon) over the start | VmHWM (incl. page cache) "
            "| time (s) | accuracy |",
            "|---|---|---|---|---|",
            (
                f"| {memory['data_bytes'] / mib:.0f} MiB | "
                f"{(memory['peak'] - memory['baseline']) / mib:.0f} MiB "
                f"({(memory['peak'] - memory['baseline']) / memory['data_bytes']:.1%} of the data) "
                f"| {memory['hwm'] / mib:.0f} MiB | {memory['seconds']:.1f} "
                f"| {memory['accuracy']:.3f} |"
            ),
            "",
        ]
    lines += ["<!-- out-of-core:end -->", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples")
    parser.add_argument("--features", type=int, default=512, help="features per modality")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--memory-mb", type=float, default=1500, help="0 skips the memory run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import h5py  # noqa: F401

        with_h5py = True
    except ImportError:
        print("h5py is not installed (pip install sk-i2m2[hdf5]): no HDF5 row.")
        with_h5py = False

    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    X, y = make_data(args.n, args.features)
    throughput({m: v[:500] for m, v in X.items()}, y[:500], 1, args.batch_size)  # warm-up
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (data, close) in layouts(X, Path(folder), with_h5py).items():
            rate, seconds = throughput(data, y, args.epochs, args.batch_size)
            close()
            rows.append((name, rate, seconds))
            print(f"{name:40s} {rate:10.0f} samples/s  ({seconds:.1f} s)", flush=True)
    memory = None
    if args.memory_mb > 0:
        memory = peak_memory(args.memory_mb)
        grown = memory["peak"] - memory["baseline"]
        print(
            f"memmap of {memory['data_bytes'] / 2**20:.0f} MiB: peak RssAnon +{grown / 2**20:.0f} "
            f"MiB, VmHWM {memory['hwm'] / 2**20:.0f} MiB, accuracy {memory['accuracy']:.3f}"
        )
    section = results_section(
        rows,
        memory,
        args=args,
        command=script_command("out_of_core"),
        elapsed=time.perf_counter() - start,
        load=(load_start, os.getloadavg()[0]),
    )
    if args.no_write:
        print(section)
    else:
        write_results(section, RESULTS, name="out-of-core")
        print(f"Wrote {RESULTS}.")


if __name__ == "__main__":
    main()
