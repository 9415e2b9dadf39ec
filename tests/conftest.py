import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

# The test models are tiny: a second intra-op thread costs more than it saves,
# and on a busy machine the threads contend and each fit gets several times slower.
torch.set_num_threads(1)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected tests
def pytest_collection_modifyitems(config, items):
    # Test modules with slow, self-contained checks (test_docs.py) start them
    # now in subprocesses, beside the tests, which train with one thread; the
    # tests that read their outcome go near the end.
    if config.option.collectonly:
        return
    modules = {item.module for item in items if hasattr(item, "module")}
    waiting = set()
    for module in modules:
        if hasattr(module, "start_in_background"):
            waiting.update(module.start_in_background(config, items))
    # Tests that start worker processes of their own (a Ray runtime) go after
    # those, once the subprocesses are done, so as not to compete with them
    # for the cores.
    last = {
        item
        for item in items
        if item.name in getattr(getattr(item, "module", None), "run_last", ())
    }
    items[:] = (
        [item for item in items if item not in waiting | last]
        + [item for item in items if item in waiting]
        + [item for item in items if item in last]
    )


class EpochProbe(Callback):
    """Records ``read()`` in the history under ``key`` at the end of every epoch of a stage."""

    def __init__(self, key, read):
        self.key = key
        self.read = read

    def on_epoch_end(self, net, **kwargs):
        net.history.record(self.key, self.read())


class Explode(Callback):
    """Raises ``RuntimeError("boom")`` at the end of the first epoch."""

    def on_epoch_end(self, net, **kwargs):
        raise RuntimeError("boom")


def recorded_in_training(clf, key):
    """The values an :class:`EpochProbe` recorded under ``key`` in the stage nets of ``clf``."""
    nets = [net for pair in clf.fold_nets_ or [] for net in pair if net is not None]
    nets = nets or [clf.pretrain_net_]
    return {value for net in nets for value in net.history[:, key]}


def fit_probed(key, read, **params):
    """A small default fit recording ``read()`` under ``key`` each epoch; returns ``(clf, X)``.

    ``params`` override the defaults, ``callbacks`` (the probe) included.
    """
    # Imported here, after the thread count above is set for the whole session.
    from sk_i2m2 import I2M2Classifier

    X, y = make_independent(120, n_modalities=2)
    params = {
        "max_epochs": 3,
        "random_state": 0,
        "callbacks": [EpochProbe(key, read)],
        **params,
    }
    return I2M2Classifier(**params).fit(X, y), X


# Small, fast settings shared by the tests that train.
FAST = dict(max_epochs=30, n_iter_no_change=5, random_state=0)


def make_xor(n, seed=0, n_features=4):
    """y = XOR of the signs of one feature per modality: pure inter-modality signal."""
    rng = np.random.RandomState(seed)
    a = rng.randn(n, n_features).astype(np.float32)
    b = rng.randn(n, n_features).astype(np.float32)
    y = ((a[:, 0] > 0) ^ (b[:, 0] > 0)).astype(int)
    return {"a": a, "b": b}, y


def make_independent(n, seed=0, n_modalities=3, n_features=5, shift=0.45):
    """Each modality carries a weak, independent (given y) signal about y."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    sign = (2 * y - 1)[:, None]
    X = {
        f"m{k}": (rng.randn(n, n_features) + shift * sign * (np.arange(n_features) < 2)).astype(
            np.float32
        )
        for k in range(n_modalities)
    }
    return X, y


@pytest.fixture
def xor_data():
    return make_xor(1000)


@pytest.fixture
def small_data():
    rng = np.random.RandomState(0)
    n = 120
    y = rng.randint(0, 3, n)
    X = {
        "tab": (rng.randn(n, 6) + y[:, None] * 0.8).astype(np.float32),
        "img": (rng.randn(n, 1, 8, 8) + y[:, None, None, None] * 0.5).astype(np.float32),
    }
    return X, y
