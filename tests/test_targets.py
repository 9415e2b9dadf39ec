"""Sample weights in fit, and multilabel targets."""

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.nn.experts import SAMPLE_WEIGHT
from sk_i2m2.nn.losses import ExpertsNLLLoss, ProductOfExpertsNLLLoss
from sk_i2m2.nn.product import combine_labels
from sk_i2m2.outcomes.labels import label_weight_tensor
from sk_i2m2.training.calibration import fit_temperature

FAST = dict(max_epochs=2, random_state=0)


def _data(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = {"a": rng.randn(n, 4), "b": rng.randn(n, 3)}
    y = (X["a"][:, 0] + X["b"][:, 0] > 0).astype(int)
    return X, y


def _rows(X, rows):
    return {m: v[rows] for m, v in X.items()}


# ----------------------------------------------------------------------
# sample_weight


@pytest.mark.parametrize("cv", [None, 2])
def test_zero_weight_gives_exactly_the_model_fitted_without_the_row(cv):
    # Exact in every setting, early stopping and inner folds included: rows
    # of weight 0 are dropped before the validation split, so both fits see
    # the same rows, splits, batches and random streams.
    X, y = _data()
    weight = np.ones(len(y))
    weight[::5] = 0
    keep = weight > 0
    weighted = I2M2Classifier(cv=cv, **FAST).fit(X, y, sample_weight=weight)
    dropped = I2M2Classifier(cv=cv, **FAST).fit(_rows(X, keep), y[keep])
    assert_array_equal(weighted.predict_proba(X), dropped.predict_proba(X))
    assert weighted.temperature_ == dropped.temperature_


def test_weights_count_by_their_ratios_and_move_the_model():
    rng = np.random.RandomState(1)
    X = {"a": rng.randn(80, 3), "b": rng.randn(80, 2)}
    y = rng.randint(0, 2, 80)  # noise: the prior is all there is to learn
    weight = np.where(y == 1, 5.0, 1.0)
    params = dict(max_epochs=4, lr=1e-2, cv=None, random_state=0)
    unweighted = I2M2Classifier(**params).fit(X, y)
    weighted = I2M2Classifier(**params).fit(X, y, sample_weight=weight)
    doubled = I2M2Classifier(**params).fit(X, y, sample_weight=2 * weight)
    # Every loss is sum(w * loss) / sum(w); doubling is exact in floating point.
    assert_array_equal(weighted.predict_proba(X), doubled.predict_proba(X))
    assert weighted.predict_proba(X)[:, 1].mean() > unweighted.predict_proba(X)[:, 1].mean() + 0.05


def test_weighted_criteria_and_temperature_ignore_rows_of_weight_zero():
    torch.manual_seed(0)
    logits, y = torch.randn(2, 8, 3), torch.randint(0, 3, (8,))
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.0, 1.0, 3.0, 1.0])
    seen = weight > 0
    available = torch.ones(2, 8, dtype=torch.bool)
    available[1, 2] = False
    class_weight = torch.tensor([1.0, 2.0, 0.5])
    for criterion in (ExpertsNLLLoss(class_weight), ProductOfExpertsNLLLoss(class_weight)):
        full = criterion(logits, y, available, sample_weight=weight)
        kept = criterion(logits[:, seen], y[seen], available[:, seen], sample_weight=weight[seen])
        torch.testing.assert_close(full, kept)
    # Per-expert validation sums (early stopping) are weighted sums.
    total, count = ExpertsNLLLoss().per_expert_sums(logits, y, available, sample_weight=weight)
    losses = ExpertsNLLLoss().expert_losses(logits, y)
    torch.testing.assert_close(total, (losses * weight * available).sum(1))
    torch.testing.assert_close(count, (weight * available).sum(1))
    # Integer weights count like repeated rows.
    repeated = torch.repeat_interleave(torch.arange(8), weight.round().long())
    torch.testing.assert_close(
        ProductOfExpertsNLLLoss()(logits, y, sample_weight=weight.round()),
        ProductOfExpertsNLLLoss()(logits[:, repeated], y[repeated]),
    )
    summed = logits.sum(0)
    assert fit_temperature(summed, y, sample_weight=weight) == pytest.approx(
        fit_temperature(summed[seen], y[seen], sample_weight=weight[seen]), rel=1e-6
    )


def test_stage_nets_take_the_weights_from_the_batch(fitted_targets_model):
    clf, X, y = fitted_targets_model
    weight = torch.rand(len(y))
    batch = {m: torch.as_tensor(v, dtype=torch.float32) for m, v in X.items()}
    batch[SAMPLE_WEIGHT] = weight
    target = torch.as_tensor(y)
    for net in (clf.pretrain_net_, clf.finetune_net_):
        with torch.no_grad():
            outputs = net.module_(**batch)  # the module ignores the weights
            loss = net.get_loss(outputs, target, X=batch)
            expected = net.criterion_(outputs, target, sample_weight=weight)
            unweighted = net.criterion_(outputs, target)
        torch.testing.assert_close(loss, expected)
        assert not torch.isclose(loss, unweighted)


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.r_[-1.0, np.ones(79)], "Negative"),
        (np.ones(79), r"expected \(80,\)"),
        (np.r_[np.nan, np.ones(79)], "NaN"),
        (np.r_[np.inf, np.ones(79)], "infinity"),
        (np.zeros(80), "non-zero"),
        (np.array(["a"] * 80), "could not convert"),
    ],
)
def test_bad_sample_weight_is_refused_before_training(fitted_targets_model, weight, message):
    clf, X, y = fitted_targets_model
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="sample_weight must hold") as info:
        clf.fit(X, y, sample_weight=weight)
    assert info.match(message)
    assert_array_equal(clf.predict_proba(X), before)


def test_a_class_without_weight_is_refused_before_training(fitted_targets_model):
    clf, X, y = fitted_targets_model
    before = clf.predict_proba(X)
    weight = np.where(y == y[0], 0.0, 1.0)
    with pytest.raises(
        ValueError, match=f"sample_weight gives class {int(y[0])} a total weight of 0"
    ):
        clf.fit(X, y, sample_weight=weight)
    assert_array_equal(clf.predict_proba(X), before)


@pytest.fixture(scope="module")
def fitted_targets_model():
    X, y = _data()
    return I2M2Classifier(cv=None, **FAST).fit(X, y), X, y


def test_sample_weight_is_routed_through_permodality_pipeline_and_search():
    X, y = _data(60)
    X = ModalityDict(X)
    weight = np.random.RandomState(2).rand(60) + 0.5

    def pipe():
        prep = PerModality(
            {
                "a": StandardScaler().set_fit_request(sample_weight=True),
                "b": StandardScaler().set_fit_request(sample_weight=False),
            }
        )
        clf = I2M2Classifier(early_stopping=False, **FAST)
        clf.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        return Pipeline([("prep", prep), ("clf", clf)])

    with sklearn.config_context(enable_metadata_routing=True):
        fitted = pipe().fit(X, y, sample_weight=weight)
        search = GridSearchCV(pipe(), {"clf__lr": [1e-3]}, cv=2).fit(X, y, sample_weight=weight)
    scalers = fitted.named_steps["prep"].transformers_
    # Only the transformer that requests the weights gets them.
    assert_allclose(scalers["a"].mean_, np.average(X["a"], axis=0, weights=weight))
    assert_allclose(scalers["b"].mean_, X["b"].mean(axis=0))
    direct = I2M2Classifier(early_stopping=False, **FAST).fit(
        fitted.named_steps["prep"].transform(X), y, sample_weight=weight
    )
    proba = fitted.predict_proba(X)
    assert_array_equal(proba, direct.predict_proba(fitted.named_steps["prep"].transform(X)))
    # The refit of the search is the same weighted fit.
    assert_array_equal(search.best_estimator_.predict_proba(X), proba)
    assert np.isfinite(search.best_score_)


# ----------------------------------------------------------------------
# Multilabel targets


def _multilabel(n, seed=0):
    """Label 0 from modality a, label 1 from b, label 2 from both (an XOR of signs)."""
    rng = np.random.RandomState(seed)
    X = {"a": rng.randn(n, 4), "b": rng.randn(n, 3)}
    Y = np.c_[
        X["a"][:, 0] > 0,
        X["b"][:, 0] > 0,
        (X["a"][:, 1] > 0) ^ (X["b"][:, 1] > 0),
    ].astype(int)
    return X, Y


@pytest.fixture(scope="module")
def multilabel_model():
    X, Y = _multilabel(400)
    clf = I2M2Classifier(max_epochs=15, lr=1e-2, cv=2, class_weight="balanced", random_state=0).fit(
        X, Y
    )
    return clf, X, Y


def test_multilabel_shapes_tags_and_learning(multilabel_model):
    clf, _, _ = multilabel_model
    X, Y = _multilabel(200, seed=1)
    proba = clf.predict_proba(X)
    assert clf.multilabel_ and clf.n_folds_ == 2
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert proba.shape == (200, 3) and ((proba >= 0) & (proba <= 1)).all()
    predicted = clf.predict(X)
    assert predicted.shape == (200, 3) and predicted.dtype.kind == "i"
    assert_array_equal(predicted, (proba > 0.5).astype(int))
    auroc = roc_auc_score(Y, proba, average=None)
    assert (auroc[:2] > 0.9).all() and auroc[2] > 0.6, auroc
    experts = clf.expert_proba(X)
    assert sorted(experts) == ["a", "b", "inter"]
    assert all(p.shape == (200, 3) for p in experts.values())
    # The inter expert sees both modalities: it carries label 2.
    assert roc_auc_score(Y[:, 2], experts["inter"][:, 2]) > roc_auc_score(
        Y[:, 2], experts["a"][:, 2]
    )
    tags = clf.__sklearn_tags__()
    assert tags.target_tags.multi_output and tags.classifier_tags.multi_label


def test_multilabel_product_is_per_label_and_contributions_sum_to_log_odds(multilabel_model):
    clf, X, _ = multilabel_model
    logits = torch.randn(3, 5, 2, dtype=torch.float64)
    available = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=bool)
    # Normalised product of Bernoulli experts, written out.
    q = torch.sigmoid(logits).masked_fill(~available.unsqueeze(-1), 1.0)
    q0 = torch.sigmoid(-logits).masked_fill(~available.unsqueeze(-1), 1.0)
    product = q.prod(0) / (q.prod(0) + q0.prod(0))
    torch.testing.assert_close(combine_labels(logits, available).exp(), product)
    frame = clf.modality_contributions(_rows(X, slice(0, 20)))
    proba = clf.predict_proba(_rows(X, slice(0, 20)))
    assert frame.shape == (20, 9)
    assert list(frame.columns.get_level_values("expert")[:3]) == ["a", "b", "inter"]
    assert_allclose(frame.T.groupby(level="label").sum().T, np.log(proba / (1 - proba)), rtol=1e-4)
    assert_array_equal(frame.attrs["predicted"], clf.predict(_rows(X, slice(0, 20))))


def test_multilabel_save_load(multilabel_model, tmp_path):
    clf, X, _ = multilabel_model
    clf.save(tmp_path / "model")
    loaded = I2M2Classifier.load(tmp_path / "model")
    assert loaded.multilabel_ and loaded.n_folds_ == 2
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_soft_multilabel_targets_weights_and_per_label_class_weights():
    X, Y = _multilabel(120)
    soft = 0.1 + 0.8 * Y  # e.g. shares of annotators
    weight = np.random.RandomState(0).rand(120) + 0.5
    clf = I2M2Classifier(
        cv=None, class_weight=[{1: 2.0}, {0: 1.0, 1: 1.0}, {}], max_epochs=3, random_state=0
    )
    clf.fit(X, soft, sample_weight=weight)
    assert clf.predict_proba(X).shape == (120, 3)
    balanced = label_weight_tensor("balanced", np.array([[1, 0.5], [0, 0.5], [0, 0.5], [0, 0.5]]))
    # Label 0: 1 positive of 4 -> 4 / 2; 3 negatives -> 4 / 6. Label 1: 2 and 2.
    torch.testing.assert_close(balanced, torch.tensor([[4 / 6, 1.0], [2.0, 1.0]]))


@pytest.mark.parametrize(
    "y, message",
    [
        (np.full((80, 2), 2), r"outside \[0, 1\] in label column 0"),
        (np.c_[np.zeros(80), np.full(80, -0.5)], "label column 1"),
        (np.full((80, 1), 0.3), "at least 2 label columns"),
        (np.c_[np.zeros(80), np.full(80, np.nan)], "NaN"),
        (np.full((80, 2), "a"), "multilabel target"),
    ],
)
def test_bad_multilabel_targets_are_refused_clearly(fitted_targets_model, y, message):
    clf, X, _ = fitted_targets_model
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)
    assert_array_equal(clf.predict_proba(X), before)


def test_multilabel_class_weight_must_name_each_label(fitted_targets_model):
    clf, X, _ = fitted_targets_model
    with pytest.raises(ValueError, match="one dict"):
        clf.set_params(class_weight={0: 1.0, 1: 2.0}).fit(X, np.c_[_data()[1], _data()[1]])
    clf.set_params(class_weight=None)


def test_multilabel_scoring_in_cross_val_score():
    X, Y = _multilabel(120)
    X = ModalityDict(X)
    clf = I2M2Classifier(cv=None, max_epochs=3, lr=1e-2, random_state=0)
    # roc_auc is the macro average over labels of predict_proba's columns.
    auroc = cross_val_score(clf, X, Y, cv=2, scoring="roc_auc", error_score="raise")
    f1 = cross_val_score(clf, X, Y, cv=2, scoring="f1_samples", error_score="raise")
    assert (auroc > 0.6).all() and (f1 > 0.3).all()
