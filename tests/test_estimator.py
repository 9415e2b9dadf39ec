"""Core behaviour of I2M2Classifier: the method, classifier semantics, determinism."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, make_independent, make_xor, requires_cuda
from sklearn.model_selection import train_test_split
from skorch.callbacks import Callback

from sk_i2m2 import I2M2Classifier, ModalityDict


def _split(X, y, seed=0):
    X = ModalityDict(X)
    return train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)


@pytest.mark.parametrize("fusion", ["concat", "lrtf"])
def test_inter_only_signal_needs_inter_expert(fusion):
    X, y = make_xor(1400)
    X_tr, X_te, y_tr, y_te = _split(X, y)
    scores = {}
    for dependencies in ["inter", "both", "intra"]:
        clf = I2M2Classifier(
            dependencies, fusion=fusion, max_epochs=60, n_iter_no_change=10, random_state=0
        )
        scores[dependencies] = clf.fit(X_tr, y_tr).score(X_te, y_te)
    assert scores["inter"] >= 0.9, scores
    assert scores["both"] >= 0.9, scores
    assert scores["intra"] < 0.62, scores  # chance is 0.5


def test_independent_signals_need_intra_experts():
    X, y = make_independent(1600)
    X_tr, X_te, y_tr, y_te = _split(X, y)
    single = {
        name: I2M2Classifier(**FAST).fit({name: X_tr[name]}, y_tr).score({name: X_te[name]}, y_te)
        for name in X
    }
    intra = I2M2Classifier("intra", **FAST).fit(X_tr, y_tr).score(X_te, y_te)
    both = I2M2Classifier("both", **FAST).fit(X_tr, y_tr).score(X_te, y_te)
    assert intra > max(single.values()) + 0.03, (intra, single)
    assert both > max(single.values()) + 0.03, (both, single)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["cat", "dog", "emu"]),
        np.array([3, -1, 7]),
        np.array([True, False]),
    ],
)
def test_labels_round_trip_and_proba(small_data, labels):
    X, y = small_data
    y_labels = labels[y % len(labels)]
    clf = I2M2Classifier(max_epochs=3, random_state=0).fit(X, y_labels)
    np.testing.assert_array_equal(clf.classes_, np.unique(y_labels))
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype
    assert set(pred) <= set(clf.classes_)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), len(clf.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-5)


def test_learns_above_chance_on_image_and_table(small_data):
    X, y = small_data
    clf = I2M2Classifier(**FAST).fit(X, y)
    assert clf.score(X, y) > 0.7  # chance is about 1/3
    experts = clf.expert_proba(X)
    assert list(experts) == ["tab", "img", "inter"] == clf.expert_names_
    for proba in experts.values():
        assert proba.shape == (len(y), 3)
        np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_expert_sets_per_dependencies(small_data):
    X, y = small_data
    names = {
        dep: I2M2Classifier(dep, max_epochs=2, random_state=0).fit(X, y).expert_names_
        for dep in ["both", "intra", "inter"]
    }
    assert names == {"both": ["tab", "img", "inter"], "intra": ["tab", "img"], "inter": ["inter"]}


def test_stages_and_fitted_nets(small_data):
    X, y = small_data
    clf = I2M2Classifier(
        cv=None, max_epochs=4, finetune_epochs=3, early_stopping=False, lr=2e-3, random_state=0
    ).fit(X, y)
    assert len(clf.pretrain_net_.history) == 4
    assert len(clf.finetune_net_.history) == 3
    assert clf.pretrain_net_.lr == 2e-3
    assert clf.finetune_net_.lr == pytest.approx(2e-4)  # the paper's 10x lower
    assert clf.module_ is clf.finetune_net_.module_
    # The pretrain net keeps the experts as they were before fine-tuning.
    before = clf.pretrain_net_.module_.state_dict()
    after = clf.module_.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)

    inter = I2M2Classifier("inter", max_epochs=3, random_state=0).fit(X, y)
    assert inter.finetune_net_ is None
    skip = I2M2Classifier(cv=None, max_epochs=3, finetune_epochs=0, random_state=0).fit(X, y)
    assert skip.finetune_net_ is None and skip.module_ is skip.pretrain_net_.module_


def test_early_stopping_restores_best_expert_epochs(small_data):
    X, y = small_data
    clf = I2M2Classifier(
        cv=None, encoders={"tab": "mlp"}, max_epochs=40, n_iter_no_change=3, random_state=0
    ).fit(X, y)
    history = clf.pretrain_net_.history
    assert len(history) < 40
    for name in clf.expert_names_:
        losses = history[:, f"valid_loss_{name}"]
        best = history[:, f"valid_loss_{name}_best"]
        assert best[int(np.argmin(losses))]
    assert "valid_loss" in clf.finetune_net_.history[-1]


def test_each_expert_stops_alone_and_is_not_run_after(small_data):
    X, y = small_data
    X = {**X, "noise": np.random.RandomState(1).randn(len(y), 4).astype(np.float32)}

    class CountExpertCalls(Callback):
        """Epochs in which each expert ran a forward pass."""

        def on_train_begin(self, net, **kwargs):
            self.epochs_, self.epoch = {}, None
            for name, expert in net.module_.experts.items():
                expert.register_forward_hook(self._hook(name))

        def on_epoch_begin(self, net, **kwargs):
            self.epoch = len(net.history)

        def on_train_end(self, net, **kwargs):
            # Not on_epoch_end: the callback that stops the stage raises there.
            self.epoch = None

        def _hook(self, name):
            def hook(module, args, output):
                if self.epoch is not None:
                    self.epochs_.setdefault(name, set()).add(self.epoch)

            return hook

    clf = I2M2Classifier(
        cv=None,
        # The optimizer given, so that the table's linear expert trains in
        # stage 1 too rather than being solved before it.
        optimizer=torch.optim.AdamW,
        lr=0.03,
        max_epochs=100,
        n_iter_no_change=3,
        finetune_epochs=0,
        callbacks={"pretrain": [CountExpertCalls()]},
        random_state=0,
    ).fit(X, y)
    checkpoint = dict(clf.pretrain_net_.callbacks_)["expert_checkpoint"]
    history = clf.pretrain_net_.history
    # Every expert stopped after `patience` epochs without an improvement of
    # more than `threshold` on its best loss, on its own schedule; it was
    # neither run nor scored after that, and the stage ended with the last one.
    assert set(checkpoint.stopped_epoch_) == set(clf.expert_names_)
    assert len(set(checkpoint.stopped_epoch_.values())) > 1
    # The stage runs a copy of the user's callback.
    ran = next(cb for _, cb in clf.pretrain_net_.callbacks_ if isinstance(cb, CountExpertCalls))
    ran = ran.epochs_
    threshold = checkpoint.threshold
    assert threshold == 1e-2  # the classifier's (a log loss)
    for name, stopped in checkpoint.stopped_epoch_.items():
        improved = checkpoint.improved_epoch_[name]
        assert stopped == improved + 3
        assert ran[name] == set(range(1, stopped + 1))
        scored = [row["epoch"] for row in history if f"valid_loss_{name}" in row]
        assert scored == list(range(1, stopped + 1))
        losses = history[:stopped, f"valid_loss_{name}"]
        # The restored weights are the lowest loss's, even where it fell by
        # less than the threshold; patience counts from the last clear fall.
        assert checkpoint.best_epoch_[name] == 1 + int(np.argmin(losses))
        assert checkpoint.best_epoch_[name] >= improved
        best_then = min(losses[:improved])
        assert min(losses[improved:]) >= best_then * (1 - threshold)
    assert len(history) == max(checkpoint.stopped_epoch_.values())
    assert clf.module_.stopped == frozenset()


def test_same_seed_same_model_and_different_seed_differs(small_data):
    X, y = small_data
    p1 = I2M2Classifier(max_epochs=3, random_state=7).fit(X, y).predict_proba(X)
    p2 = I2M2Classifier(max_epochs=3, random_state=7).fit(X, y).predict_proba(X)
    p3 = I2M2Classifier(max_epochs=3, random_state=8).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_fit_does_not_change_global_torch_rng(small_data):
    X, y = small_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_lrtf_factors_are_parameters_that_train(small_data):
    X, y = small_data
    clf = I2M2Classifier("inter", fusion="lrtf", max_epochs=3, early_stopping=False, random_state=0)
    clf.fit(X, y)
    fusion = clf.module_.experts["inter"].fusion
    names = [n for n, _ in clf.module_.named_parameters() if ".fusion." in n]
    assert any("factors" in n for n in names)
    # Compare with a fresh module built from the same seed: the factors moved.
    fresh = I2M2Classifier(
        "inter", fusion="lrtf", max_epochs=1, early_stopping=False, lr=1e-12, random_state=0
    ).fit(X, y)
    for trained, initial in zip(fusion.factors, fresh.module_.experts["inter"].fusion.factors):
        assert trained.shape == initial.shape
        assert not torch.allclose(trained, initial)

    module = clf.module_.train()
    tensors = {k: torch.as_tensor(v) for k, v in X.items()}
    loss = module(**tensors).sum(0).logsumexp(-1).sum()
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in fusion.factors)


def test_three_modalities_and_kinds():
    rng = np.random.RandomState(0)
    n = 90
    y = rng.randint(0, 2, n)
    X = {
        "vec": rng.randn(n, 3).astype(np.float32) + y[:, None],
        "seq": rng.randn(n, 20, 2).astype(np.float32),
        "img": rng.randn(n, 12, 12).astype(np.float32),
        "vol": rng.randn(n, 1, 8, 8, 8).astype(np.float32),
    }
    # One split, not the small-cohort folds: the test reads the inferred encoders.
    clf = I2M2Classifier(max_epochs=2, cv=None, random_state=0).fit(X, y)
    kinds = {m: type(spec).__name__ for m, spec in clf.encoders_.items()}
    assert kinds == {
        "vec": "MLPEncoder",
        "seq": "GRUEncoder",
        "img": "Conv2dEncoder",
        "vol": "Conv3dEncoder",
    }
    assert clf.expert_names_ == ["vec", "seq", "img", "vol", "inter"]
    assert clf.predict_proba(X).shape == (n, 2)


def test_single_modality_is_a_unimodal_classifier(small_data):
    X, y = small_data
    for dependencies in ["both", "intra", "inter"]:
        clf = I2M2Classifier(dependencies, max_epochs=3, random_state=0).fit({"tab": X["tab"]}, y)
        assert clf.expert_names_ == ["tab"]
        assert clf.finetune_net_ is None


def test_custom_module_encoder(small_data):
    X, y = small_data

    class TinyCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    clf = I2M2Classifier(cv=None, encoders={"img": TinyCNN}, max_epochs=2, random_state=0).fit(X, y)
    assert type(clf.encoders_["img"]).__name__ == "ModuleEncoder"
    body = clf.module_.experts["img"].encoder.body.net
    assert isinstance(body, TinyCNN)
    assert clf.module_.experts["img"].head.in_features == 4
    # Intra and inter experts get their own copy.
    assert body is not clf.module_.experts["inter"].encoders["img"].body.net


def test_frozen_module_encoder_does_not_train(small_data):
    from sk_i2m2.encoders import ModuleEncoder

    X, y = small_data
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    clf = I2M2Classifier(
        encoders={"img": ModuleEncoder(backbone, trainable=False)},
        max_epochs=2,
        early_stopping=False,
        random_state=0,
    ).fit(X, y)
    # One frozen copy runs in front of the experts (see test_frozen.py).
    trained = clf.module_.frozen["img"].body.net[1].weight
    torch.testing.assert_close(trained, backbone[1].weight)


def test_encoder_params_reachable_through_get_set_params(small_data):
    from sk_i2m2.encoders import Conv2dEncoder, MLPEncoder

    clf = I2M2Classifier(cv=None, encoders={"img": Conv2dEncoder(), "tab": "mlp"})
    params = clf.get_params()
    assert params["encoders__img__channels"] is None
    assert params["encoders__img__pool_size"] == 2
    clf.set_params(encoders__img__channels=(4, 8), encoders__tab__hidden_sizes=(16,))
    assert clf.encoders["img"].channels == (4, 8)
    assert isinstance(clf.encoders["tab"], MLPEncoder)
    assert clf.encoders["tab"].hidden_sizes == (16,)
    X, y = small_data
    clf.set_params(max_epochs=2, random_state=0).fit(X, y)
    conv_layers = [
        m for m in clf.module_.experts["img"].encoder.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert [c.out_channels for c in conv_layers] == [4, 8]
    with pytest.raises(ValueError, match="modality 'other'"):
        I2M2Classifier(cv=None).set_params(encoders__other__hidden_sizes=(4,))


def test_dataframe_modality_and_standardisation():
    rng = np.random.RandomState(0)
    n = 200
    y = rng.randint(0, 2, n)
    # Raw clinical scales: age ~ 60, volume ~ 3000, a 0/1 flag.
    table = pd.DataFrame(
        {
            "age": 60 + 10 * rng.randn(n) + 15 * y,
            "volume": 3000 + 400 * rng.randn(n) - 600 * y,
            "flag": rng.randint(0, 2, n),
        }
    )
    other = rng.randn(n, 2).astype(np.float32)
    clf = I2M2Classifier(cv=None, **FAST).fit({"clinical": table, "other": other}, y)
    assert list(clf.feature_names_in_["clinical"]) == ["age", "volume", "flag"]
    assert clf.score({"clinical": table, "other": other}, y) > 0.75
    scaler = clf.module_.experts["clinical"].encoder.scaler
    np.testing.assert_allclose(scaler.mean.numpy()[:2], table.mean().to_numpy()[:2], rtol=0.05)


def test_mismatched_sample_counts_name_the_modality(small_data):
    X, y = small_data
    bad = dict(X, img=X["img"][:-1])
    with pytest.raises(ValueError, match="Modality 'img' has 119 samples"):
        I2M2Classifier().fit(bad, y)
    with pytest.raises(ValueError, match="y has 119 samples"):
        I2M2Classifier().fit(X, y[:-1])


def test_failed_fit_keeps_previous_model(small_data):
    X, y = small_data
    clf = I2M2Classifier(max_epochs=2, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError):
        clf.fit(dict(X, tab=X["tab"][:-1]), y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_device_auto_resolves_to_available_device(small_data):
    X, y = small_data
    clf = I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert clf.device_.type == expected
    assert next(clf.module_.parameters()).device.type == expected


@requires_cuda
def test_cuda_fit_predict(small_data):
    X, y = small_data
    clf = I2M2Classifier(device="cuda", **FAST).fit(X, y)
    assert next(clf.module_.parameters()).is_cuda
    assert clf.score(X, y) > 0.7
    cpu = I2M2Classifier(device="cpu", **FAST).fit(X, y)
    assert abs(clf.score(X, y) - cpu.score(X, y)) < 0.15


@requires_cuda
def test_cuda_lrtf_factors_on_device(small_data):
    X, y = small_data
    clf = I2M2Classifier(fusion="lrtf", device="cuda", max_epochs=2, random_state=0).fit(X, y)
    assert all(f.is_cuda for f in clf.module_.experts["inter"].fusion.factors)
