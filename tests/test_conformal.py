"""MAPIE's split-conformal prediction sets and intervals around fitted sk-i2m2 estimators."""

import numpy as np
import pytest

from sk_i2m2 import I2M2Classifier, I2M2Regressor, ModalityDict

pytest.importorskip("mapie")
from mapie.classification import SplitConformalClassifier
from mapie.regression import SplitConformalRegressor

LEVELS = [0.8, 0.9, 0.95]


def _data(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    X = ModalityDict(
        a=rng.randn(n, 4) + 0.8 * y[:, None],
        b=rng.randn(n, 3) + 0.5 * y[:, None],
    )
    rows = rng.permutation(n)
    return X, y, np.split(rows, [n // 3, 2 * n // 3])


def test_split_conformal_classifier_reaches_its_coverage():
    X, y, (train, calib, test) = _data()
    clf = I2M2Classifier(max_epochs=5, cv=None, random_state=0).fit(X[train], y[train])
    mapie = SplitConformalClassifier(estimator=clf, confidence_level=LEVELS, prefit=True)
    mapie.conformalize(X[calib], y[calib])
    predicted, sets = mapie.predict_set(X[test])
    np.testing.assert_array_equal(predicted, clf.predict(X[test]))
    assert sets.shape == (len(test), 3, len(LEVELS))
    covered = sets[np.arange(len(test)), y[test]].mean(axis=0)
    # 1000 calibration and 1000 test rows: the coverage is within about 2 points of the level.
    assert np.all(covered >= np.array(LEVELS) - 0.06), covered
    sizes = sets.sum(axis=1).mean(axis=0)
    assert np.all(np.diff(sizes) >= 0), sizes  # higher confidence, larger sets


def test_split_conformal_regressor_reaches_its_coverage():
    X, _, (train, calib, test) = _data(seed=1)
    target = 3 * X["a"][:, 0] - 2 * X["b"][:, 1] + np.random.RandomState(1).randn(len(X))
    reg = I2M2Regressor(max_epochs=5, cv=None, random_state=0).fit(X[train], target[train])
    mapie = SplitConformalRegressor(estimator=reg, confidence_level=LEVELS, prefit=True)
    mapie.conformalize(X[calib], target[calib])
    predicted, intervals = mapie.predict_interval(X[test])
    np.testing.assert_allclose(predicted, reg.predict(X[test]))
    inside = (intervals[:, 0, :] <= target[test, None]) & (target[test, None] <= intervals[:, 1, :])
    assert np.all(inside.mean(axis=0) >= np.array(LEVELS) - 0.06), inside.mean(axis=0)


def test_a_plain_dict_fails_in_mapie_and_a_modality_dict_does_not():
    # Documented in the user guide: MAPIE counts a dict's keys as samples.
    X, y, (train, calib, _) = _data(n=90)
    clf = I2M2Classifier(max_epochs=1, cv=None, random_state=0).fit(X[train], y[train])
    mapie = SplitConformalClassifier(estimator=clf, prefit=True)
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[2, 30\\]"):
        mapie.conformalize(dict(X[calib]), y[calib])
    mapie.conformalize(X[calib], y[calib])
