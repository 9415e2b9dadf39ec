"""I2M2SurvivalAnalysis: the Cox losses, training, prediction, persistence, workflows."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

from sk_i2m2 import I2M2SurvivalAnalysis, ModalityDict, PerModality
from sk_i2m2.nn.cox import ExpertsCoxLoss, ProductOfExpertsCoxLoss, cox_nll_sums
from sk_i2m2.outcomes.cox import CoxOutcome, breslow_cumulative_hazard, check_survival_target

# Small, fast settings of the tests that train.
TINY = dict(max_epochs=30, n_iter_no_change=5, cv=None, random_state=0, device="cpu")


def _target(event, time):
    return np.array(list(zip(event, time)), dtype=[("event", bool), ("time", float)])


def make_survival(n, seed=0, signal=1.0):
    """Two modalities; the log-hazard is ``signal * (a[:, 0] + b[:, 0] + a[:, 1] * b[:, 1])``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32)
    log_hazard = signal * (a[:, 0] + b[:, 0] + a[:, 1] * b[:, 1])
    time = rng.exponential(np.exp(-log_hazard))
    # Administrative censoring at 3: every fold reaches the last time, as
    # scikit-survival's Brier score needs of its training rows.
    censor = np.minimum(rng.exponential(2.0, size=n), 3.0)
    return {"a": a, "b": b}, _target(time <= censor, np.minimum(time, censor))


@pytest.fixture(scope="module")
def planted():
    X, y = make_survival(400, seed=0)
    train = {m: x[:300] for m, x in X.items()}
    test = {m: x[300:] for m, x in X.items()}
    return train, y[:300], test, y[300:]


@pytest.fixture(scope="module")
def fitted(planted):
    X, y, _, _ = planted
    return I2M2SurvivalAnalysis(**TINY).fit(X, y)


# ----------------------------------------------------------------------
# The Cox loss


def _direct_nll(r, time, event, w, ties):
    """The negative partial log-likelihood, one distinct event time at a time."""
    total = 0.0
    for t in np.unique(time[event]):
        tied = (time == t) & event
        at_risk = time >= t
        S = np.sum(w[at_risk] * np.exp(r[at_risk]))
        total -= np.sum(w[tied] * r[tied])
        if ties == "breslow":
            total += np.sum(w[tied]) * np.log(S)
        else:
            d, T = tied.sum(), np.sum(w[tied] * np.exp(r[tied]))
            total += np.mean(w[tied]) * sum(np.log(S - k / d * T) for k in range(d))
    return total


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_loss_matches_a_direct_computation(ties):
    rng = np.random.default_rng(0)
    n = 40
    time = rng.integers(1, 8, n).astype(float)  # many ties
    event = rng.random(n) < 0.7
    r = rng.normal(size=n)
    w = rng.uniform(0.2, 2.0, n)
    for weights in (None, w):
        nll, events = cox_nll_sums(
            torch.tensor(r)[None],
            torch.tensor(time),
            torch.tensor(event, dtype=torch.float64),
            sample_weight=None if weights is None else torch.tensor(weights),
            ties=ties,
        )
        ref_w = np.ones(n) if weights is None else weights
        np.testing.assert_allclose(nll.item(), _direct_nll(r, time, event, ref_w, ties), rtol=1e-10)
        np.testing.assert_allclose(events.item(), ref_w[event].sum(), rtol=1e-12)
    # The two approximations agree without ties.
    distinct = torch.tensor(rng.permutation(n).astype(float))
    args = (torch.tensor(r)[None], distinct, torch.tensor(event, dtype=torch.float64))
    torch.testing.assert_close(
        cox_nll_sums(*args, ties="efron"), cox_nll_sums(*args, ties="breslow")
    )


def test_cox_losses_leave_out_unseen_samples_and_sum_the_product():
    rng = np.random.default_rng(1)
    n = 30
    time = torch.tensor(rng.exponential(size=n))
    event = torch.tensor(rng.random(n) < 0.6, dtype=torch.float64)
    y = torch.stack([time, event], 1)
    outputs = torch.tensor(rng.normal(size=(2, n, 1)))
    available = torch.ones(2, n, dtype=torch.bool)
    available[1, :10] = False
    hidden = outputs.clone()
    hidden[1, :10] = float("nan")
    # Stage 1: expert 1's loss is that of its own rows only, NaN there or not.
    per_expert = ExpertsCoxLoss().per_expert(hidden, y, available)
    alone = ExpertsCoxLoss().per_expert(outputs[1:, 10:], y[10:])
    torch.testing.assert_close(per_expert[1:], alone)
    # Stage 2: the loss of the summed log-risk, an unseen expert adding 0.
    product = ProductOfExpertsCoxLoss()(hidden, y, available)
    summed = torch.where(available, outputs[..., 0], 0.0).sum(0)
    nll, events = cox_nll_sums(summed[None], time, event)
    torch.testing.assert_close(product, nll[0] / events[0])


def test_breslow_baseline_is_the_nelson_aalen_estimator_at_zero_risk():
    time = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    event = np.array([True, True, False, True, False])
    times, hazard = breslow_cumulative_hazard(np.zeros(5), event, time)
    np.testing.assert_array_equal(times, [1, 2, 3, 5])
    np.testing.assert_allclose(hazard, np.cumsum([1 / 5, 1 / 4, 1 / 2, 0]))


# ----------------------------------------------------------------------
# The target


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.ones(5), "structured array with two fields.*Surv.from_arrays"),
        (np.ones((5, 2)), "structured array.*shape \\(5, 2\\)"),
        (_target([False] * 5, [1.0] * 5), "no events"),
        (_target([True] * 5, [1.0, -1, 2, 3, 4]), "finite and non-negative"),
        (_target([True] * 5, [1.0, np.inf, 2, 3, 4]), "finite and non-negative"),
        (
            np.array(
                [(1.0, 1.0), (np.nan, 2.0), (0.0, 1.0), (1.0, 3.0), (0.0, 2.0)],
                dtype=[("e", float), ("t", float)],
            ),
            "has NaN",
        ),
    ],
)
def test_target_errors(y, match):
    X = {"a": np.zeros((5, 2))}
    with pytest.raises(ValueError, match=match):
        I2M2SurvivalAnalysis(**TINY).fit(X, y)


def test_target_fields_in_either_order():
    y = np.array([(1.0, True), (2.0, False)], dtype=[("days", float), ("died", bool)])
    event, time, event_field, time_field = check_survival_target(y)
    assert (event_field, time_field) == ("died", "days")
    np.testing.assert_array_equal(event, [True, False])
    np.testing.assert_array_equal(time, [1.0, 2.0])


# ----------------------------------------------------------------------
# Fitting and prediction


def test_concordance_on_planted_signal_and_noise(fitted, planted):
    pytest.importorskip("sksurv")
    _, _, X_test, y_test = planted
    assert fitted.score(X_test, y_test) > 0.75
    X, y = make_survival(300, seed=1, signal=0.0)
    noise = I2M2SurvivalAnalysis(**TINY).fit({m: x[:200] for m, x in X.items()}, y[:200])
    assert abs(noise.score({m: x[200:] for m, x in X.items()}, y[200:]) - 0.5) < 0.1


def test_survival_functions(fitted, planted):
    _, _, X_test, _ = planted
    survival = fitted.predict_survival_function(X_test, return_array=True)
    assert survival.shape == (100, len(fitted.unique_times_))
    assert np.all((survival >= 0) & (survival <= 1))
    assert np.all(np.diff(survival, axis=1) <= 0)
    hazard = fitted.predict_cumulative_hazard_function(X_test, return_array=True)
    np.testing.assert_allclose(survival, np.exp(-hazard))
    # A higher risk score means a lower survival curve.
    risk = fitted.predict(X_test)
    order = np.argsort(risk)
    assert np.all(np.diff(survival[order, -1]) <= 1e-12)
    pytest.importorskip("sksurv")
    functions = fitted.predict_survival_function(X_test)
    times = fitted.unique_times_
    np.testing.assert_allclose(functions[3](times), survival[3])


def test_expert_outputs_and_contributions_add_up(fitted, planted):
    _, _, X_test, _ = planted
    experts = fitted.expert_predict(X_test)
    assert sorted(experts) == ["a", "b", "inter"]
    contributions = fitted.modality_contributions(X_test)
    risk = fitted.predict(X_test)
    np.testing.assert_allclose(contributions.sum(axis=1), risk, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(contributions["a"], experts["a"] * fitted.temperature_)
    assert set(fitted.expert_predict(X_test, stage="pretrain")) == {"a", "b", "inter"}


def test_missing_modality(planted):
    X, y, X_test, _ = planted
    X = {m: x.copy() for m, x in X.items()}
    X["b"][:60] = np.nan
    model = I2M2SurvivalAnalysis(**TINY).fit(X, y)
    assert model.missing_rate_["b"] == pytest.approx(0.2)
    only_a = model.predict({"a": X_test["a"]})
    contributions = model.modality_contributions({"a": X_test["a"]})
    np.testing.assert_array_equal(contributions["b"], 0.0)
    np.testing.assert_allclose(contributions.sum(axis=1), only_a, rtol=1e-6, atol=1e-9)
    assert np.isnan(model.expert_predict({"a": X_test["a"]})["b"]).all()


def test_sample_weight_as_repeated_rows(planted):
    X, y, X_test, _ = planted
    X = {m: x[:80] for m, x in X.items()}
    y = y[:80]
    weight = np.ones(80)
    weight[:40] = 2.0
    fit = dict(TINY, early_stopping=False, max_epochs=10, finetune_epochs=0)
    weighted = I2M2SurvivalAnalysis(**fit).fit(X, y, sample_weight=weight)
    zero = weight.copy()
    zero[40:] = 0.0
    dropped = I2M2SurvivalAnalysis(**fit).fit(X, y, sample_weight=zero)
    alone = I2M2SurvivalAnalysis(**fit).fit({m: x[:40] for m, x in X.items()}, y[:40])
    np.testing.assert_allclose(dropped.predict(X_test), alone.predict(X_test), rtol=1e-5)
    assert not np.allclose(weighted.predict(X_test), alone.predict(X_test))


def test_small_cohort_folds_are_stratified_on_the_event(planted):
    X, y, _, _ = planted
    model = I2M2SurvivalAnalysis(max_epochs=3, random_state=0, device="cpu")
    outcome = CoxOutcome()
    target, y_train = outcome.check_target(y, len(y))
    splits = outcome.splits(y_train, 5, 0, target)
    rates = [y["event"][test].mean() for _, test in splits]
    assert np.ptp(rates) < 0.02
    model.fit(X, y)
    assert model.n_folds_ == 5 and model.batch_size_ == 240  # full batch


def test_save_load_equality(fitted, planted, tmp_path):
    _, _, X_test, _ = planted
    fitted.save(tmp_path / "model")
    loaded = I2M2SurvivalAnalysis.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))
    np.testing.assert_array_equal(
        loaded.predict_survival_function(X_test, return_array=True),
        fitted.predict_survival_function(X_test, return_array=True),
    )
    assert loaded.event_field_ == "event" and loaded.temperature_ == fitted.temperature_


def test_without_sksurv_fitting_works_and_scoring_names_the_extra(fitted, planted, monkeypatch):
    import sys

    _, _, X_test, y_test = planted
    monkeypatch.setitem(sys.modules, "sksurv", None)
    monkeypatch.setitem(sys.modules, "sksurv.metrics", None)
    monkeypatch.setitem(sys.modules, "sksurv.functions", None)
    with pytest.raises(ImportError, match=r"sk-i2m2\[survival\]"):
        fitted.score(X_test, y_test)
    with pytest.raises(ImportError, match=r"sk-i2m2\[survival\]"):
        fitted.predict_survival_function(X_test)
    assert fitted.predict_survival_function(X_test, return_array=True).shape[0] == 100


# ----------------------------------------------------------------------
# scikit-learn and scikit-survival workflows


def test_grid_search_with_a_sksurv_scorer_and_group_folds(planted):
    metrics = pytest.importorskip("sksurv.metrics")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, X_test, y_test = planted
    X = ModalityDict({m: x[:150] for m, x in X.items()})
    y = y[:150]
    pipe = Pipeline(
        [
            ("scale", PerModality({"a": StandardScaler()})),
            ("model", I2M2SurvivalAnalysis(**dict(TINY, max_epochs=5))),
        ]
    )
    tau = np.quantile(y["time"], 0.8)
    search = GridSearchCV(
        metrics.as_concordance_index_ipcw_scorer(pipe, tau=tau),
        {"estimator__model__dependencies": ["intra", "both"]},
        cv=GroupKFold(3),
    )
    search.fit(X, y, groups=np.arange(150) % 5)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    times = np.quantile(y["time"], [0.2, 0.4, 0.6])
    brier = GridSearchCV(
        metrics.as_integrated_brier_score_scorer(pipe, times),
        {"estimator__model__ties": ["breslow"]},
        cv=KFold(2),
    ).fit(X, y)
    assert brier.best_score_ < 0  # scikit-survival negates the Brier score
    # sksurv.metrics take the outputs directly.
    model = search.best_estimator_.estimator_
    cindex = metrics.concordance_index_censored(
        y_test["event"], y_test["time"], model.predict(ModalityDict(X_test))
    )[0]
    assert 0 <= cindex <= 1


def test_dependency_report_and_permutation_importance(planted):
    pytest.importorskip("sksurv")
    from sk_i2m2.inspection import dependency_report, permutation_importance

    X, y, X_test, y_test = planted
    model = I2M2SurvivalAnalysis(**TINY)
    report = dependency_report(model, X, y, cv=3, scoring=None)
    assert list(report.index) == ["a", "b", "intra", "inter", "I2M2", "chance"]
    assert report.loc["chance", "score_mean"] == pytest.approx(0.5)
    assert report.loc["I2M2", "score_mean"] > 0.7
    assert report.attrs["scoring"] == "concordance_index"
    with pytest.raises(ValueError, match="scoring=None"):
        dependency_report(model, X, y, cv=3, scoring="accuracy")
    fitted = model.fit(X, y)
    result = permutation_importance(fitted, X_test, y_test, n_repeats=2, random_state=0)
    assert list(result.feature_names) == ["a", "b"]
    assert (result.importances_mean > 0).all()


def test_warm_start_keeps_the_experts_and_cross_val_score_scores_concordance(planted):
    pytest.importorskip("sksurv")
    from sklearn.model_selection import cross_val_score

    X, y, _, _ = planted
    model = I2M2SurvivalAnalysis(**dict(TINY, warm_start=True)).fit(X, y)
    inter = model.pretrain_net_.module_.experts["inter"].state_dict()
    model.set_params(dependencies="inter").fit(X, y)
    kept = model.module_.experts["inter"].state_dict()
    for name, value in inter.items():
        torch.testing.assert_close(kept[name], value)
    estimator = I2M2SurvivalAnalysis(**dict(TINY, max_epochs=5))
    scores = cross_val_score(estimator, ModalityDict(X), y, cv=2)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
