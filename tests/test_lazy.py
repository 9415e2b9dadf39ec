"""Modalities read a batch at a time: sparse matrices, arrays on disk, files."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import ShuffleSplit, cross_val_score
from sklearn.pipeline import Pipeline

from sk_i2m2 import FileModality, I2M2Classifier, ModalityDict, PerModality
from sk_i2m2._data import BatchSlicer, LazyBatchLoader, LazyModalityDataset, ModalityTensorDataset
from sk_i2m2._lazy import LazyRows, RowsOnDisk, _SparseSource, source_of
from sk_i2m2._validation import check_modalities
from sk_i2m2.nn.standardize import input_moments

ROOT = Path(__file__).resolve().parents[1]
# Batches of 16 of the 51 training rows: several batches read per epoch.
PARAMS = dict(max_epochs=2, cv=None, batch_size=16, random_state=0)


def _counts(n=60, n_features=40, seed=0):
    """Sparse-looking counts whose first columns carry the label, and an image."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    counts = rng.poisson(0.2, size=(n, n_features)).astype(np.float64)
    counts[:, :3] += 2 * y[:, None] * rng.binomial(1, 0.7, size=(n, 3))
    image = (rng.randn(n, 1, 6, 6) + 0.5 * y[:, None, None, None]).astype(np.float32)
    return {"counts": counts, "img": image}, y


# ----------------------------------------------------------------------
# Sparse


def test_sparse_modality_stays_sparse_and_gives_the_dense_model(monkeypatch):
    dense, y = _counts()
    dense["counts"][[3, 8]] = np.nan  # two samples miss the counts
    expected = I2M2Classifier(**PARAMS).fit(dense, y).predict_proba(dense)
    # Validation keeps the matrix sparse, with the missing rows emptied.
    tensors, _, present = check_modalities({**dense, "counts": sp.csr_array(dense["counts"])})
    stored = tensors["counts"].sparse()
    assert isinstance(tensors["counts"], LazyRows) and sp.issparse(stored)
    assert stored.dtype == np.float32 and stored[[3, 8]].nnz == 0
    assert present[:, 0].tolist() == [i not in (3, 8) for i in range(60)]
    # Training densifies one batch at a time, never all rows.
    largest = []
    read = _SparseSource.read
    monkeypatch.setattr(
        _SparseSource, "read", lambda self, rows: largest.append(len(rows)) or read(self, rows)
    )
    for to_sparse in [sp.csr_matrix, sp.csc_array, sp.coo_matrix]:
        X = {**dense, "counts": to_sparse(dense["counts"])}
        largest.clear()
        clf = I2M2Classifier(**PARAMS).fit(X, y)
        # The linear expert of this small cohort is solved from its 60 rows,
        # read once; training reads batches of 16 rows, validation of 9.
        assert sorted(largest)[-2:] == [16, len(y)] and largest.count(len(y)) == 1
        assert clf.batch_size_ == 16 and clf.weight_decay_grid_ is not None
        assert clf.input_shapes_["counts"] == (40,)
        assert clf.missing_rate_["counts"] == pytest.approx(2 / 60)
        np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-6, atol=1e-7)
        # Dense and sparse inputs are interchangeable at prediction time.
        np.testing.assert_allclose(clf.predict_proba(dense), expected, rtol=1e-6, atol=1e-7)


def test_sparse_moments_match_the_dense_ones():
    rng = np.random.RandomState(0)
    x = sp.lil_matrix(sp.random(50, 7, density=0.3, random_state=rng, dtype=np.float32) * 1e3)
    x[:, 4] = 5.0  # a constant, stored column
    x = sp.csr_matrix(x)
    lazy = LazyRows(source_of(x))
    got = input_moments(lazy, (0,))
    want = input_moments(torch.from_numpy(x.toarray()), (0,))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    assert got[1][4] == 1.0
    # Rows of a view; any other statistics layout reads (dense) chunks.
    torch.testing.assert_close(
        input_moments(lazy[10:30], ()), input_moments(torch.from_numpy(x[10:30].toarray()), ())
    )


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (np.inf, ValueError, r"Modality 'counts': Input counts contains infinity.* sample 7\."),
        (np.nan, ValueError, r"Modality 'counts' contains 1 NaN value\(s\) \(first in sample 7\)"),
    ],
)
def test_sparse_non_finite_values_are_refused_with_the_sample(value, error, match):
    dense, y = _counts(n=20)
    counts = sp.csr_matrix(dense["counts"])
    counts[7, 2] = value
    with pytest.raises(error, match=match):
        I2M2Classifier(**PARAMS).fit({**dense, "counts": counts}, y)
    assert np.isfinite(counts[[0]].toarray()).all()  # the user's matrix is left as it was


def test_tfidf_notes_stay_sparse_in_a_pipeline():
    rng = np.random.RandomState(0)
    n = 120
    y = rng.randint(0, 2, n)
    words = np.array(["fever", "cough", "pain", "rash", "stable", "normal", "follow", "up"])
    notes = [
        " ".join(rng.choice(words[:4] if label else words[4:], 6)) + " patient seen" for label in y
    ]
    notes[::10] = [None] * 12  # patients without notes miss the modality
    X = ModalityDict(notes=notes, labs=rng.randn(n, 3).astype(np.float32))
    pipe = Pipeline(
        [
            ("pre", PerModality({"notes": TfidfVectorizer()})),
            ("clf", I2M2Classifier(max_epochs=5, cv=None, lr=1e-2, random_state=0)),
        ]
    ).fit(X, y)
    assert sp.issparse(pipe[:-1].transform(X)["notes"])
    assert pipe["clf"].missing_rate_["notes"] == pytest.approx(0.1)
    assert pipe.score(X, y) > 0.85
    assert pipe["clf"].input_shapes_["notes"] == (len(pipe[0].transformers_["notes"].vocabulary_),)


# ----------------------------------------------------------------------
# Batches


def test_lazy_batches_are_the_batches_of_the_fast_path():
    rng = np.random.RandomState(0)
    x = sp.random(23, 5, density=0.5, random_state=rng, dtype=np.float32).tocsr()
    y = torch.arange(23)
    lazy = LazyModalityDataset({"x": LazyRows(source_of(x)), "t": torch.arange(23.0)[:, None]}, y)
    tensors = ModalityTensorDataset({"x": torch.from_numpy(x.toarray()), "t": lazy.X["t"]}, y)
    subset = torch.utils.data.Subset(lazy, np.arange(3, 20))
    fast_subset = torch.utils.data.Subset(tensors, np.arange(3, 20))
    for args, fast_args in [((lazy,), (tensors,)), ((subset,), (fast_subset,))]:
        for shuffle in (False, True):
            kwargs = dict(batch_size=4, shuffle=shuffle)
            got = list(LazyBatchLoader(*args, generator=torch.Generator().manual_seed(1), **kwargs))
            want = list(
                BatchSlicer(*fast_args, generator=torch.Generator().manual_seed(1), **kwargs)
            )
            assert len(got) == len(want) == len(LazyBatchLoader(*args, **kwargs))
            for (Xg, yg), (Xw, yw) in zip(got, want):
                assert torch.equal(yg, yw)
                assert all(torch.equal(Xg[k], Xw[k]) for k in Xw)


# ----------------------------------------------------------------------
# On disk


def _in_memory_reference(X, y):
    clf = I2M2Classifier(**PARAMS).fit(X, y)
    return clf.predict_proba(X)


def test_hdf5_and_memmap_modalities_give_the_in_memory_model(tmp_path):
    h5py = pytest.importorskip("h5py")
    X, y = _counts()
    X["img"][5] = np.nan  # a sample without the image
    expected = _in_memory_reference(X, y)
    with h5py.File(tmp_path / "cohort.h5", "w") as f:
        f["img"] = X["img"]
        f["flat"] = X["img"][:, 0, 0]
    memmap = np.memmap(tmp_path / "counts.f32", np.float32, "w+", shape=X["counts"].shape)
    memmap[:] = X["counts"]
    memmap.flush()
    with h5py.File(tmp_path / "cohort.h5", "r") as f:
        on_disk = {"counts": np.memmap(memmap.filename, np.float32, "r", shape=memmap.shape)}
        on_disk["img"] = f["img"]
        tensors, _, _ = check_modalities(on_disk)
        assert all(isinstance(t, LazyRows) for t in tensors.values())
        clf = I2M2Classifier(**PARAMS).fit(on_disk, y)
        assert clf.missing_rate_["img"] == pytest.approx(1 / 60)
        np.testing.assert_allclose(clf.predict_proba(on_disk), expected, rtol=1e-6, atol=1e-7)
        with pytest.raises(ValueError, match=r"'img' has samples of shape \(6,\) but had \(1, 6"):
            clf.predict({"img": f["flat"]})
        # Rows selected by scikit-learn's splitters (unsorted here) stay on disk.
        rows = np.array([40, 3, 17, 5])
        part = ModalityDict(on_disk)[rows]
        assert isinstance(part["img"], RowsOnDisk) and part["img"].shape == (4, 1, 6, 6)
        np.testing.assert_allclose(clf.predict_proba(part), expected[rows], rtol=1e-6, atol=1e-7)
        split = ShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
        estimator = I2M2Classifier(**PARAMS)
        np.testing.assert_array_equal(
            cross_val_score(estimator, ModalityDict(on_disk), y, cv=split),
            cross_val_score(estimator, ModalityDict(X), y, cv=split),
        )
    # The fitted model saves and loads as before.
    clf.save(tmp_path / "model")
    loaded = I2M2Classifier.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-6, atol=1e-7)


def test_zarr_modality_gives_the_in_memory_model(tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = _counts()
    expected = _in_memory_reference(X, y)
    images = zarr.open_array(
        str(tmp_path / "img.zarr"), mode="w", shape=X["img"].shape, chunks=(8, 1, 6, 6), dtype="f4"
    )
    images[:] = X["img"]
    clf = I2M2Classifier(**PARAMS).fit({**X, "img": images}, y)
    assert isinstance(check_modalities({"img": images})[0]["img"], LazyRows)
    np.testing.assert_allclose(clf.predict_proba({**X, "img": images}), expected, rtol=1e-6)


def test_file_modality_gives_the_in_memory_model(tmp_path):
    X, y = _counts()
    expected = _in_memory_reference(X, y)
    paths = [tmp_path / f"scan{i}.npy" for i in range(len(y))]
    for path, image in zip(paths, X["img"]):
        np.save(path, image)
    scans = FileModality(paths, np.load, num_workers=1)
    assert len(scans) == 60 and scans.sample_shape == (1, 6, 6)
    clf = I2M2Classifier(**PARAMS).fit({**X, "img": scans}, y)
    np.testing.assert_allclose(clf.predict_proba({**X, "img": scans}), expected, rtol=1e-6)
    # Rows of a ModalityDict select files, as scikit-learn's splitters do.
    part = ModalityDict(X, img=scans)[np.arange(10, 20)]
    assert part["img"].paths == paths[10:20]
    np.testing.assert_allclose(clf.predict_proba(part), expected[10:20], rtol=1e-6)


def test_file_modality_errors_name_the_modality_and_the_file(tmp_path):
    X, y = _counts(n=20)
    paths = [tmp_path / f"scan{i}.npy" for i in range(20)]
    for path, image in zip(paths, X["img"]):
        np.save(path, image)
    np.save(paths[4], np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match=r"Modality 'img': loader\(.*scan4.npy'\) returned a"):
        I2M2Classifier(**PARAMS).fit({**X, "img": FileModality(paths, np.load)}, y)
    np.save(paths[4], np.full((1, 6, 6), np.inf))
    with pytest.raises(ValueError, match=r"Modality 'img': Input img contains inf.* sample 4\."):
        I2M2Classifier(**PARAMS).fit({**X, "img": FileModality(paths, np.load)}, y)
    with pytest.raises(TypeError, match="paths must be a sequence"):
        FileModality(str(paths[0]), np.load)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        FileModality(paths, np.load, num_workers=-1)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from sk_i2m2 import I2M2Classifier
    from sk_i2m2.encoders import MLPEncoder

    def rss_anon():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

    path, n, n_features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    data = np.memmap(path, np.float32, "w+", shape=(n, n_features))
    y = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):  # written in chunks: never whole in memory
        block = rng.standard_normal((min(4096, n - start), n_features), dtype=np.float32)
        y[start : start + len(block)] = block[:, 0] + block[:, 1] > 0
        data[start : start + len(block)] = block
    data.flush()
    del data, block
    X = {"x": np.memmap(path, np.float32, "r", shape=(n, n_features))}
    clf = I2M2Classifier(
        max_epochs=1, encoders={"x": MLPEncoder(hidden_sizes=())}, batch_size=512, lr=1e-2,
        random_state=0,
    )
    # A first, small fit imports what fitting imports lazily (optimizer, metrics).
    small = {"x": np.asarray(X["x"][:2000])}
    clf.fit(small, y[:2000]).predict(small)
    del small
    baseline = peak = rss_anon()
    done = False
    def watch():
        global peak
        while not done:
            peak = max(peak, rss_anon())
            time.sleep(0.002)
    watcher = threading.Thread(target=watch)
    watcher.start()
    clf.fit(X, y)
    accuracy = float((clf.predict(X) == y).mean())
    done = True
    watcher.join()
    print(json.dumps(dict(baseline=baseline, peak=peak, accuracy=accuracy)))
    """
)


def test_memmap_fit_and_predict_keep_anonymous_memory_small(tmp_path):
    """Fit and predict on a 320 MB float32 memmap; the peak *anonymous* memory stays small.

    Measured: ``RssAnon`` of a fresh subprocess (read from ``/proc/self/status``
    every 2 ms by a thread), its peak during ``fit`` + ``predict`` minus its
    value after a small warm-up fit (which imports what fitting imports
    lazily). Not ``VmHWM``/``ru_maxrss``: pages of the memmap that were read
    count there too, although they are file-backed page cache the kernel can
    drop at any time; anonymous memory is what the process really holds
    (copies of batches and chunks, model, statistics). glibc's mmap threshold
    is fixed at 1 MiB (``MALLOC_MMAP_THRESHOLD_``): by default it grows with
    the buffers freed, and freed chunk buffers then stay in the heap, counted
    in ``RssAnon`` though free (about a hundred MiB here, independent of the
    data size). A fit that densified the data would add at least its 320 MB.
    """
    n, n_features = 80_000, 1000
    data_bytes = 4 * n * n_features
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "x.f32"), str(n), str(n_features)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(2**20)},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    grown = result["peak"] - result["baseline"]
    message = f"{grown / 2**20:.0f} MiB anonymous for {data_bytes / 2**20:.0f} MiB of data"
    assert grown < 0.1 * data_bytes, message
    assert result["accuracy"] > 0.8  # one epoch of a linear expert; chance is 0.5
