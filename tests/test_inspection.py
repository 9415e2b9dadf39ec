import sys

import matplotlib
import numpy as np
import pytest
from conftest import FAST
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality, inspection
from sk_i2m2.datasets import make_multimodal_classification
from sk_i2m2.inspection import dependency_report, plot_dependency_report

matplotlib.use("Agg")

MODELS = ["m0", "m1", "intra", "inter", "I2M2", "chance"]
COLUMNS = ["kind", "score_mean", "score_std", "agreement", "mean_entropy"]
# Few epochs for the tests that check plumbing, not the verdict.
TINY = dict(max_epochs=3, n_iter_no_change=3, random_state=0)


def _data(intra_strength, inter_strength, n=300):
    return make_multimodal_classification(
        n, intra_strength=intra_strength, inter_strength=inter_strength, random_state=0
    )


@pytest.fixture(scope="module")
def inter_report():
    X, y = _data(0.0, 2.0)
    return dependency_report(I2M2Classifier(**FAST), X, y, cv=3)


def test_inter_dominated_data(inter_report):
    assert inter_report.attrs["dependency"] == "inter-dominated"
    assert inter_report.attrs["verdict"].startswith("inter-dominated: inter ")
    scores = inter_report["score_mean"]
    assert scores["inter"] > 0.85 and scores["I2M2"] > 0.85
    assert max(scores["m0"], scores["m1"], scores["intra"]) < 0.65


def test_intra_dominated_data():
    X, y = _data(0.7, 0.0)
    report = dependency_report(I2M2Classifier(**FAST), X, y, cv=3)
    assert report.attrs["dependency"] == "intra-dominated", report.attrs["verdict"]
    scores = report["score_mean"]
    # The product of two informative experts beats each of them.
    assert scores["intra"] > max(scores["m0"], scores["m1"])
    assert scores["intra"] > scores["chance"] + 0.2


def test_report_frame(inter_report):
    report = inter_report
    assert list(report.index) == MODELS
    assert list(report.columns) == COLUMNS
    assert list(report["kind"]) == [
        "single-modality expert",
        "single-modality expert",
        "product of intra experts",
        "inter expert",
        "I2M2",
        "prior baseline",
    ]
    assert report["score_mean"].between(0, 1).all()
    assert (report["score_std"] >= 0).all()
    assert report.loc["I2M2", "agreement"] == 1.0
    assert report["agreement"].between(0, 1).all()
    assert report["mean_entropy"].between(0, 1).all()
    # The prior of balanced classes is the uniform distribution.
    assert report.loc["chance", "mean_entropy"] == pytest.approx(1.0)

    fold_scores = report.attrs["fold_scores"]
    assert fold_scores.shape == (3, len(MODELS))
    assert list(fold_scores.columns) == MODELS
    np.testing.assert_allclose(fold_scores.mean().to_numpy(), report["score_mean"])
    matrix = report.attrs["agreement_matrix"]
    assert list(matrix.index) == list(matrix.columns) == ["m0", "m1", "inter"]
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T)
    assert report.attrs["scoring"] == "accuracy"
    assert "\n" not in report.attrs["verdict"]


def test_estimator_is_cloned_not_modified():
    X, y = _data(0.7, 0.0, n=120)
    clf = I2M2Classifier(dependencies="intra", **TINY)
    params = clf.get_params()
    report = dependency_report(clf, X, y, cv=2)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    assert clf.get_params() == params
    # The clones model both dependencies whatever the estimator asked for.
    assert np.isfinite(report.loc["inter", "score_mean"])


def test_group_kfold_pipeline_and_log_loss():
    X, y = _data(0.7, 0.0, n=120)
    # Each patient has one sample of each class, so that every fold is balanced
    # whichever groups GroupKFold puts in it (how it breaks ties between groups
    # of equal size differs across scikit-learn releases).
    patient = np.empty(len(y), dtype=int)
    for label in (0, 1):
        patient[y == label] = np.arange(np.sum(y == label))
    pipe = Pipeline(
        [
            ("prep", PerModality({"m0": StandardScaler()})),
            ("clf", I2M2Classifier(**TINY)),
        ]
    )
    report = dependency_report(
        pipe, X, y, cv=GroupKFold(n_splits=3), groups=patient, scoring="neg_log_loss"
    )
    assert list(report.index) == MODELS
    assert report.attrs["scoring"] == "neg_log_loss"
    assert report.attrs["fold_scores"].shape == (3, len(MODELS))
    # Balanced classes: the prior's log loss is log(2).
    assert report.loc["chance", "score_mean"] == pytest.approx(-np.log(2), abs=0.01)
    assert (report["score_mean"] < 0).all()
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe)


def test_any_classifier_scorer_and_plain_dict():
    X, y = _data(0.7, 0.0, n=120)
    report = dependency_report(I2M2Classifier(**TINY), dict(X), y, cv=2, scoring="roc_auc_ovr")
    assert report.loc["chance", "score_mean"] == pytest.approx(0.5)
    assert report["score_mean"].between(0, 1).all()


def test_missing_modality_rows_are_scored_only_where_seen():
    X, y = _data(0.7, 0.0, n=120)
    X = ModalityDict(m0=X["m0"].copy(), m1=X["m1"])
    X["m0"][::3] = np.nan  # a third of the samples lack modality m0
    n_scored = []

    def counting_accuracy(estimator, X_rows, y_rows):
        n_scored.append(len(y_rows))
        return float(np.mean(estimator.predict(X_rows) == y_rows))

    report = dependency_report(I2M2Classifier(**TINY), X, y, cv=2, scoring=counting_accuracy)
    # Each fold scores m0, m1, intra, inter, I2M2 and chance, in this order.
    per_model = dict(zip(MODELS, np.reshape(n_scored, (2, len(MODELS))).sum(axis=0)))
    assert per_model == {
        "m0": 80,
        "m1": 120,
        "intra": 120,
        "inter": 120,
        "I2M2": 120,
        "chance": 120,
    }
    assert report.attrs["scoring"] == "counting_accuracy"
    numbers = report.drop(columns="kind").to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    assert np.isfinite(report.attrs["agreement_matrix"].to_numpy()).all()


def test_product_of_experts_leaves_out_unseen_rows():
    a = np.array([[0.8, 0.2], [np.nan, np.nan], [np.nan, np.nan]])
    b = np.array([[0.5, 0.5], [0.3, 0.7], [np.nan, np.nan]])
    product = inspection._product([a, b])
    np.testing.assert_allclose(product[0], [0.8, 0.2])
    np.testing.assert_allclose(product[1], [0.3, 0.7])
    assert np.isnan(product[2]).all()


def test_not_an_i2m2_estimator():
    X, y = _data(0.7, 0.0, n=60)
    with pytest.raises(TypeError, match="got LogisticRegression"):
        dependency_report(LogisticRegression(), X, y)
    pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])
    with pytest.raises(TypeError, match="Pipeline ending in LogisticRegression"):
        dependency_report(pipe, X, y)


def test_modalities_the_report_cannot_separate():
    X, y = _data(0.7, 0.0, n=60)
    with pytest.raises(ValueError, match="at least 2 modalities.*'m0'"):
        dependency_report(I2M2Classifier(), {"m0": X["m0"]}, y)
    with pytest.raises(TypeError, match="mapping of modality name"):
        dependency_report(I2M2Classifier(), X["m0"], y)
    with pytest.raises(
        ValueError, match="Modality name 'chance' is reserved .*a row of the report"
    ):
        dependency_report(I2M2Classifier(), {"m0": X["m0"], "chance": X["m1"]}, y)
    with pytest.raises(ValueError, match="Modality name 'm__1' contains '__'"):
        dependency_report(I2M2Classifier(), {"m0": X["m0"], "m__1": X["m1"]}, y)
    with pytest.raises(ValueError, match="Modality 'm1' has 59 samples but modality 'm0' has 60"):
        dependency_report(I2M2Classifier(), {"m0": X["m0"], "m1": X["m1"][:-1]}, y)


def test_one_scorer_only():
    X, y = _data(0.7, 0.0, n=60)
    with pytest.raises(InvalidParameterError, match="'scoring' parameter of dependency_report"):
        dependency_report(I2M2Classifier(), X, y, scoring=["accuracy", "roc_auc"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="I2M2"), "'estimator' parameter of dependency_report"),
        (dict(cv="five"), "'cv' parameter of dependency_report"),
        (dict(scoring="acuracy"), "'scoring' parameter of dependency_report"),
        (dict(n_jobs=1.5), "'n_jobs' parameter of dependency_report"),
    ],
)
def test_parameters_are_validated(kwargs, match):
    X, y = _data(0.7, 0.0, n=60)
    args = dict(estimator=I2M2Classifier(), X=X, y=y) | kwargs
    with pytest.raises(InvalidParameterError, match=match):
        dependency_report(**args)
    with pytest.raises(InvalidParameterError, match="'report' parameter of plot_dependency_report"):
        plot_dependency_report({"m0": 0.5})


def test_plot(inter_report):
    import matplotlib.pyplot as plt

    ax = plot_dependency_report(inter_report)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.patches) == len(MODELS) - 1  # chance is a line, not a bar
    assert ax.get_title().replace("\n", " ") == inter_report.attrs["verdict"]
    assert ax.get_xlabel() == "accuracy"
    assert [t.get_text() for t in ax.get_yticklabels()] == MODELS[:-1]
    plt.close(ax.figure)

    fig, axes = plt.subplots(1, 2)
    assert plot_dependency_report(inter_report, ax=axes[1]) is axes[1]
    plt.close(fig)


def test_plot_without_matplotlib(inter_report, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'sk-i2m2\[plot\]'"):
        plot_dependency_report(inter_report)


def test_fitted_estimator_is_left_as_is():
    X, y = _data(0.7, 0.0, n=120)
    clf = I2M2Classifier(**TINY).fit(X, y)
    proba = clf.predict_proba(X)
    dependency_report(clf, X, y, cv=2)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
