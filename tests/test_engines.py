"""Fits on parallel engines: Dask and Ray joblib backends, CPU share and GPU of a worker."""

import os
import pickle
import time

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from skorch.callbacks import Callback

from sk_i2m2 import I2M2Classifier, ModalityDict, _parallel
from sk_i2m2._device import resolve_device
from sk_i2m2.encoders import MLPEncoder
from sk_i2m2.fusion import ConcatFusion
from sk_i2m2.inspection import dependency_report

TINY = dict(max_epochs=2, cv=None, batch_size=32, random_state=0)
GRID = {"lr": [1e-2, 3e-2], "fusion": ["concat", "lrtf"]}


def make_data(n, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = ModalityDict(
        a=(rng.randn(n, 6) + 0.8 * y[:, None]).astype(np.float32),
        b=(rng.randn(n, 4) + 0.5 * y[:, None]).astype(np.float32),
    )
    return X, y


class ThreadProbe(Callback):
    """Records torch's intra-op threads during training in the history."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("torch_threads", torch.get_num_threads())


def fit_threads(threads_before_fit):
    """Threads a fit trains with when torch had ``threads_before_fit`` before it."""
    torch.set_num_threads(threads_before_fit)
    X, y = make_data(60)
    clf = I2M2Classifier(**TINY, callbacks=[ThreadProbe()]).fit(X, y)
    return clf.pretrain_net_.history[-1, "torch_threads"], torch.get_num_threads()


def run_searches(X, y, n_jobs=None, searches=("grid", "randomized", "cv", "report")):
    """Scores of the searches the engines must reproduce, by name."""
    search = dict(cv=2, refit=False, n_jobs=n_jobs)
    results = {}
    if "grid" in searches:
        grid = GridSearchCV(I2M2Classifier(**TINY), {"lr": GRID["lr"]}, **search).fit(X, y)
        results["grid"] = np.stack([grid.cv_results_[f"split{i}_test_score"] for i in range(2)])
    if "randomized" in searches:
        randomized = RandomizedSearchCV(
            I2M2Classifier(**TINY), GRID, n_iter=2, random_state=0, **search
        ).fit(X, y)
        results["randomized"] = np.stack(
            [randomized.cv_results_[f"split{i}_test_score"] for i in range(2)]
        )
    if "cv" in searches:
        cv = cross_validate(
            I2M2Classifier(**TINY), X, y, cv=2, return_estimator=True, n_jobs=n_jobs
        )
        results["cross_validate"] = cv["test_score"]
        # Fitted estimators sent back by the workers predict as fitted.
        results["fitted_proba"] = np.stack([est.predict_proba(X) for est in cv["estimator"]])
    if "report" in searches:
        report = dependency_report(I2M2Classifier(**TINY), X, y, cv=2, n_jobs=n_jobs)
        results["dependency_report"] = report.attrs["fold_scores"].to_numpy()
    return results


@pytest.fixture(scope="module")
def data():
    return make_data(90)


@pytest.fixture(scope="module")
def sequential(data):
    return run_searches(*data)


def assert_same_scores(parallel, sequential):
    # Workers and the test process both train with one torch thread, so the
    # arithmetic, hence every score, is the same to the last bit.
    assert parallel
    for key, value in parallel.items():
        np.testing.assert_array_equal(value, sequential[key], err_msg=key)
    assert sequential["grid"].mean() > 0.4  # 3 classes: chance is 1/3


# ----------------------------------------------------------------------
# CPU share and GPU of a worker, without an engine


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_fit_caps_torch_threads_at_omp_num_threads(monkeypatch, restore_threads):
    # torch reads OMP_NUM_THREADS only at import: a limit set afterwards (as
    # in a worker that imported torch before its engine set the variable)
    # would be ignored without the cap.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert fit_threads(2) == (1, 2)  # 1 thread during fit, 2 restored after it
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(_parallel, "_available_cpus", lambda: 8)
    monkeypatch.setattr(_parallel, "_threadpoolctl_threads", lambda: None)
    assert fit_threads(2) == (2, 2)  # no limit: torch's own count is kept


class FakeDaskWorker:
    def __init__(self, name, nthreads=1):
        self.name = name
        self.state = type("State", (), {"nthreads": nthreads})()


@pytest.mark.parametrize(
    "ray_gpu_ids, visible, dask_name, n_gpus, expected",
    [
        (["3"], "3", None, 1, "cuda:0"),  # Ray restricted the visible devices
        (["3"], "1,3", None, 2, "cuda:1"),
        (["3"], None, None, 4, "cuda:3"),  # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES
        ([], None, None, 4, "cuda"),  # a Ray task given no GPU
        (None, None, 1, 2, "cuda:1"),  # second worker of a LocalCluster, 2 GPUs
        (None, None, 2, 2, "cuda:0"),
        (None, None, 1, 1, "cuda"),  # dask-cuda: one GPU per worker
        (None, None, "tcp-worker", 2, "cuda"),
        (None, None, None, 2, "cuda"),  # no engine
    ],
)
def test_auto_device_is_the_workers_gpu(
    monkeypatch, ray_gpu_ids, visible, dask_name, n_gpus, expected
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
    monkeypatch.setattr(_parallel, "_ray_gpu_ids", lambda: ray_gpu_ids)
    worker = FakeDaskWorker(dask_name) if dask_name is not None else None
    monkeypatch.setattr(_parallel, "_dask_worker", lambda: worker)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cpu_share_of_engine_workers(monkeypatch):
    monkeypatch.setattr(_parallel, "_available_cpus", lambda: 16)
    monkeypatch.setattr(_parallel, "_threadpoolctl_threads", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_parallel, "_dask_worker", lambda: FakeDaskWorker(0, nthreads=4))
    assert _parallel.cpu_share() == 4
    monkeypatch.setattr(_parallel, "_ray_cpus", lambda: 2)
    assert _parallel.cpu_share() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _parallel.cpu_share() == 1


def test_what_travels_is_small():
    X, y = make_data(400)
    data_bytes = X["a"].nbytes + X["b"].nbytes
    assert len(pickle.dumps(X)) < data_bytes + 1000  # the arrays and no more
    assert len(pickle.dumps(MLPEncoder(hidden_sizes=(8,)))) < 500
    assert len(pickle.dumps(I2M2Classifier(encoders={"a": MLPEncoder()}))) < 2000
    sizes = []
    for n in (400, 1600):
        X, y = make_data(n)
        # The same model for both sizes (defaults differ for small cohorts).
        clf = I2M2Classifier(
            **{**TINY, "batch_size": 400},
            encoders={"a": MLPEncoder(hidden_sizes=(8,)), "b": MLPEncoder(hidden_sizes=(8,))},
            fusion=ConcatFusion(hidden_size=8),
        ).fit(X, y)
        sizes.append(len(pickle.dumps(clf)))
        restored = pickle.loads(pickle.dumps(clf))
        np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    # A fitted estimator holds its modules, optimizers and histories, and no
    # training data: 4 times the samples add nothing but a few bytes.
    assert abs(sizes[1] - sizes[0]) < 1000, sizes


# ----------------------------------------------------------------------
# Dask


def count_scatters(scheduler):
    """Keys of the ModalityDicts the scheduler will see scattered to workers."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class CountScatters(SchedulerPlugin):
        keys = set()

        def transition(self, key, start, finish, *args, **kwargs):
            if str(key).startswith("ModalityDict-"):
                self.keys.add(key)

    plugin = CountScatters()
    scheduler.add_plugin(plugin)
    return plugin.keys


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_searches_match_sequential(dask_client, data, sequential):
    scattered = count_scatters(dask_client.cluster.scheduler)
    with joblib.parallel_backend("dask"):
        parallel = run_searches(*data, n_jobs=-1)
    assert_same_scores(parallel, sequential)
    # X went to the workers once per search (4 searches), not once per fit
    # (12 fits). A scattered key is seen when it is released, which the
    # scheduler may do a moment after the search returns.
    scheduler = dask_client.cluster.scheduler
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        str(key).startswith("ModalityDict-") for key in list(scheduler.tasks)
    ):
        time.sleep(0.05)
    assert len(scattered) == 4


def test_dask_worker_fit_uses_its_cpu_share(dask_client):
    # The nanny starts workers with OMP_NUM_THREADS=1; even after torch was
    # given 2 threads in the worker, the fit trains with 1.
    threads = dask_client.submit(fit_threads, 2, pure=False).result()
    assert threads == (1, 2)


# ----------------------------------------------------------------------
# Ray (slow to start: one runtime, one test). Its joblib backend starts new
# worker processes, which import torch, for every search, so only the grid
# search runs here; the others go through the same joblib calls on Dask.
# It runs last (tests/conftest.py), when no other process holds a core.
run_last = ("test_ray_searches_match_sequential",)


def test_ray_searches_match_sequential(data, sequential):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    register_ray()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # Loopback only: by default Ray's services bind the machine's address.
        _node_ip_address="127.0.0.1",
        # Workers import this checkout of sk_i2m2, not an installed one.
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    try:
        with joblib.parallel_backend("ray"):
            parallel = run_searches(*data, n_jobs=-1, searches=("grid",))
    finally:
        ray.shutdown()
    assert_same_scores(parallel, sequential)
