"""MLPEncoder(inter_hidden_sizes=()): the inter expert reads the inputs and learns an interaction."""

import json

import numpy as np
import pytest

from sk_i2m2 import I2M2Classifier
from sk_i2m2._sizing import MULTILABEL_SMALL_COHORT, is_full_batch
from sk_i2m2.encoders import MLPEncoder


def _labels_per_view_and_across(n, seed):
    """Label 0 from view a, label 1 from view b, label 2 the agreement of two signs, one per view."""
    rng = np.random.RandomState(seed)
    X = {"a": rng.randn(n, 6).astype(np.float32), "b": rng.randn(n, 6).astype(np.float32)}
    Y = np.c_[
        X["a"][:, :2].sum(1) > 0,
        X["b"][:, :2].sum(1) > 0,
        (X["a"][:, 2] > 0) == (X["b"][:, 2] > 0),
    ].astype(int)
    return X, Y


@pytest.fixture(scope="module")
def fitted():
    # Above the (multilabel) small-cohort size: MLP experts and mini-batch AdamW.
    X, Y = _labels_per_view_and_across(MULTILABEL_SMALL_COHORT, seed=0)
    encoders = {m: MLPEncoder(inter_hidden_sizes=()) for m in X}
    clf = I2M2Classifier(encoders=encoders, random_state=0).fit(X, Y)
    X_test, Y_test = _labels_per_view_and_across(2000, seed=1)
    return clf, X_test, Y_test


def test_inter_expert_learns_the_label_across_modalities(fitted):
    clf, X_test, Y_test = fitted
    assert not is_full_batch(clf.optimizer_)
    experts = clf.expert_proba(X_test)
    accuracy = {name: ((p > 0.5) == Y_test).mean(0) for name, p in experts.items()}
    # Chance is 0.5 on the interaction label; neither view alone predicts it.
    assert accuracy["inter"][2] > 0.85, accuracy
    assert max(accuracy["a"][2], accuracy["b"][2]) < 0.6, accuracy
    product = ((clf.predict_proba(X_test) > 0.5) == Y_test).mean(0)
    assert product[2] > 0.8 and (product[:2] > 0.85).all(), product


def test_the_inter_expert_reads_the_standardised_vectors(fitted):
    clf, _, _ = fitted
    inter = clf.module_.experts["inter"]
    # The fusion's hidden layer reads every input of both views.
    assert inter.head[0].in_features == 12
    intra = clf.module_.experts["a"]
    assert intra.head.in_features == MLPEncoder().hidden_sizes[-1]


def test_default_keeps_late_fusion_of_deep_features():
    X, Y = _labels_per_view_and_across(60, seed=0)
    encoders = {m: MLPEncoder(hidden_sizes=(8, 4)) for m in X}
    clf = I2M2Classifier(encoders=encoders, max_epochs=1, cv=None, random_state=0).fit(X, Y)
    assert clf.module_.experts["inter"].head[0].in_features == 8


def test_model_saved_before_inter_hidden_sizes_loads_with_late_fusion(tmp_path):
    X, Y = _labels_per_view_and_across(60, seed=0)
    encoders = {m: MLPEncoder(hidden_sizes=(8, 4)) for m in X}
    clf = I2M2Classifier(encoders=encoders, max_epochs=1, cv=None, random_state=0).fit(X, Y)
    clf.save(tmp_path / "model")
    # A file from before inter_hidden_sizes existed: its inter expert read deep features.
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    for spec in config["fitted"]["encoders_"].values():
        del spec["params"]["inter_hidden_sizes"]
    config["params"]["encoders"] = None
    config_path.write_text(json.dumps(config))
    loaded = I2M2Classifier.load(tmp_path / "model")
    assert all(spec.inter_hidden_sizes is None for spec in loaded.encoders_.values())
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("sizes", ["wide", (0,), (8, -1), 3])
def test_bad_inter_hidden_sizes_name_the_modality_before_training(sizes):
    X, Y = _labels_per_view_and_across(60, seed=0)
    clf = I2M2Classifier(encoders={"b": MLPEncoder(inter_hidden_sizes=sizes)}, max_epochs=1)
    with pytest.raises(ValueError, match="modality 'b' has inter_hidden_sizes="):
        clf.fit(X, Y)
    assert not hasattr(clf, "module_")
