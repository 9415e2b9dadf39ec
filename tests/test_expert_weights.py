"""Expert weights (calibration="experts", the "auto" choice when cross-fitted)."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier, ModalityDict, load, to_onnx
from sk_i2m2.nn.ensemble import FoldEnsemble, MeanFoldEnsemble
from sk_i2m2.nn.losses import ProductOfExpertsBCELoss, ProductOfExpertsNLLLoss
from sk_i2m2.training.calibration import fit_expert_weights


def test_fit_expert_weights_shrinks_a_noise_expert_and_keeps_a_good_one():
    generator = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(3000, 3, generator=generator)
    y = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    noise = 3.0 * torch.randn(3000, 3, generator=generator)
    terms = torch.stack([true_logits, noise]).log_softmax(-1)
    good, bad = fit_expert_weights(terms, y)
    assert good > 0.9  # at most 1: an expert is never sharpened
    assert bad < 0.05
    empty = torch.zeros(2, 0, 3)
    assert fit_expert_weights(empty, torch.zeros(0, dtype=torch.long)) == [1.0, 1.0]


def test_fit_expert_weights_is_the_best_product_within_the_bounds():
    """A weight held at 1 leaves the others at their best given it, not at their free optimum.

    An under-confident good expert would be sharpened (its free weight is
    above 1); held at 1, the noisier expert must make up more of the
    product's confidence than it does beside a sharpened one.
    """
    generator = torch.Generator().manual_seed(0)
    true_logits = 3.0 * torch.randn(2000, 3, generator=generator)
    y = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    noisy = true_logits + 3.0 * torch.randn(2000, 3, generator=generator)
    terms = torch.stack([0.3 * true_logits, noisy]).log_softmax(-1).double()
    loss = ProductOfExpertsNLLLoss()

    def product_loss(weights):
        scales = torch.tensor(weights, dtype=torch.float64).view(-1, 1, 1)
        return float(loss(scales * terms, y))

    under_confident, noisy_weight = fit_expert_weights(terms, y)
    assert under_confident == 1.0
    grid = np.linspace(0.0, 1.0, 101)
    best_on_grid = min(product_loss([1.0, w]) for w in grid)
    assert product_loss([under_confident, noisy_weight]) <= best_on_grid + 1e-9
    # The free optimum sharpens the good expert; cut back to 1 afterwards, its
    # other weight is no longer the best one.
    free = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([free], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = loss(free.exp().view(-1, 1, 1) * terms, y)
        value.backward()
        return value

    optimizer.step(closure)
    free_weights = free.detach().exp().tolist()
    assert free_weights[0] > 1.5
    clipped = [min(w, 1.0) for w in free_weights]
    assert product_loss([under_confident, noisy_weight]) < product_loss(clipped) - 1e-3


def _two_views_one_noise(n=240, seed=0):
    """View ``signal`` predicts y; view ``noise`` is independent of it."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    signal = rng.randn(n, 5) + 1.2 * y[:, None]
    noise = rng.randn(n, 20)
    return ModalityDict(signal=signal, noise=noise), y


@pytest.fixture(scope="module")
def fitted_pair():
    X, y = _two_views_one_noise()
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    fits = {
        calibration: I2M2Classifier(calibration=calibration, random_state=0).fit(X_train, y_train)
        for calibration in (None, "auto")
    }
    return fits, X_test


def test_expert_weights_scale_the_trained_experts_exactly(fitted_pair):
    fits, X_test = fitted_pair
    raw, weighted = fits[None], fits["auto"]
    assert raw.expert_weights_ == dict.fromkeys(raw.expert_names_, 1.0)
    assert list(weighted.expert_weights_) == ["signal", "noise", "inter"]
    assert weighted.temperature_ == 1.0
    # With a noise view the experts as stage 1 left them predict the held-out
    # rows better than the fine-tuned product; the stage-1 nets keep them as
    # trained. Calibration runs after training: the same experts, each
    # tempered by its weight.
    assert weighted.final_stage_ == "pretrain"
    trained = FoldEnsemble([pretrain.module_ for pretrain, _ in weighted.fold_nets_])
    factors = torch.tensor(list(weighted.expert_weights_.values()), dtype=torch.float64)
    tempered = weighted._expert_logits(X_test, trained)[0].double() * factors.view(-1, 1, 1)
    expected = tempered.sum(0).log_softmax(-1).numpy()
    np.testing.assert_allclose(weighted.predict_log_proba(X_test), expected, atol=1e-4)


def test_the_noise_view_weighs_less_than_the_signal_view(fitted_pair):
    weights = fitted_pair[0]["auto"].expert_weights_
    assert weights["noise"] < 0.5 * weights["signal"]


def test_expert_weights_survive_save_and_load(fitted_pair, tmp_path):
    fits, X_test = fitted_pair
    weighted = fits["auto"]
    weighted.save(tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert loaded.expert_weights_ == pytest.approx(weighted.expert_weights_)
    np.testing.assert_allclose(loaded.predict_proba(X_test), weighted.predict_proba(X_test))


def test_without_stage_2_the_stage_1_experts_stay_as_trained():
    """The weights go into a copy: the stage-1 net (and warm_start) keep the trained experts."""
    X, y = _two_views_one_noise(n=120)
    clf = I2M2Classifier(finetune_epochs=0, random_state=0).fit(X, y)
    assert clf.finetune_net_ is None
    assert clf.expert_weights_["noise"] < 1.0
    fitted = clf.module_.folds[0].experts["signal"].output_layer.weight
    trained = clf.fold_nets_[0][0].module_.experts["signal"].output_layer.weight
    torch.testing.assert_close(fitted, trained * clf.expert_weights_["signal"])


def test_one_expert_gets_a_temperature():
    X, y = _two_views_one_noise(n=120)
    clf = I2M2Classifier(dependencies="inter", calibration="experts", random_state=0).fit(X, y)
    assert clf.expert_weights_ == {"inter": 1.0}
    assert clf.temperature_ != 1.0


def test_auto_fits_a_temperature_on_a_single_validation_split():
    X, y = _two_views_one_noise(n=120)
    clf = I2M2Classifier(cv=None, max_epochs=5, random_state=0).fit(X, y)
    assert clf.n_folds_ == 1
    assert clf.expert_weights_ == dict.fromkeys(clf.expert_names_, 1.0)
    assert clf.temperature_ != 1.0


def test_per_label_weights_are_each_labels_own_best_product():
    """Multilabel products are taken label by label: each label's weights are fitted alone."""
    generator = torch.Generator().manual_seed(0)
    n = 3000
    true_logits = 2.0 * torch.randn(n, 2, generator=generator)
    y = torch.bernoulli(torch.sigmoid(true_logits), generator=generator)
    noise = 2.0 * torch.randn(n, 2, generator=generator)
    # Expert "a" knows label 0 and guesses label 1; expert "b" the other way round.
    terms = torch.stack(
        [
            torch.stack([true_logits[:, 0], noise[:, 1]], 1),
            torch.stack([noise[:, 0], true_logits[:, 1]], 1),
        ]
    ).double()
    weights = fit_expert_weights(terms, y, criterion=ProductOfExpertsBCELoss, per_output=True)
    (a_knows, a_guesses), (b_guesses, b_knows) = weights
    assert min(a_knows, b_knows) > 0.9 and max(a_guesses, b_guesses) < 0.1
    for label in range(2):
        alone = fit_expert_weights(
            terms[:, :, label : label + 1],
            y[:, label : label + 1],
            criterion=ProductOfExpertsBCELoss,
        )
        assert [row[label] for row in weights] == pytest.approx(alone, abs=1e-4)
    # One weight per expert must serve both labels: a worse product.
    shared = fit_expert_weights(terms, y, criterion=ProductOfExpertsBCELoss)
    loss = ProductOfExpertsBCELoss()
    per_label = float(loss(torch.tensor(weights).view(2, 1, 2) * terms, y))
    assert per_label < float(loss(torch.tensor(shared).view(2, 1, 1) * terms, y)) - 0.05
    empty = torch.zeros(2, 0, 3)
    assert fit_expert_weights(empty, torch.zeros(0, 3), per_output=True) == [[1.0] * 3] * 2


def _one_label_per_view(n=300, seed=0):
    """Label 0 from view ``a``, label 1 from view ``b``."""
    rng = np.random.RandomState(seed)
    X = ModalityDict(a=rng.randn(n, 6), b=rng.randn(n, 6))
    Y = np.c_[X["a"][:, :2].sum(1) > 0, X["b"][:, :2].sum(1) > 0].astype(int)
    return X, Y


@pytest.fixture(scope="module")
def multilabel_fit():
    X, Y = _one_label_per_view()
    X_train, X_test, Y_train, _ = train_test_split(X, Y, test_size=0.3, random_state=0)
    return I2M2Classifier(random_state=0).fit(X_train, Y_train), X_test


def test_multilabel_experts_are_weighed_per_label(multilabel_fit):
    clf, X_test = multilabel_fit
    assert clf.n_folds_ == 5 and clf.temperature_ == 1.0
    weights = clf.expert_weights_
    assert list(weights) == ["a", "b", "inter"]
    for weight in weights.values():
        assert isinstance(weight, np.ndarray) and weight.shape == (2,)
        assert ((weight >= 0) & (weight <= 1)).all()
    # Each view's expert keeps its say on its own label and is shrunk on the other.
    assert weights["a"][0] > 2 * weights["a"][1]
    assert weights["b"][1] > 2 * weights["b"][0]
    # The fitted model is the product of the kept stage's experts, each label's
    # logits tempered by that label's weight.
    stage = 0 if clf.final_stage_ == "pretrain" else 1
    trained = MeanFoldEnsemble([nets[stage].module_ for nets in clf.fold_nets_])
    factors = torch.tensor(np.stack(list(weights.values())), dtype=torch.float64)
    tempered = clf._expert_logits(X_test, trained)[0].double() * factors.unsqueeze(1)
    np.testing.assert_allclose(
        clf.predict_proba(X_test), torch.sigmoid(tempered.sum(0)).numpy(), atol=1e-5
    )


def test_per_label_weights_survive_save_and_load(multilabel_fit, tmp_path):
    clf, X_test = multilabel_fit
    clf.save(tmp_path / "model")
    loaded = load(tmp_path / "model")
    for name, weight in clf.expert_weights_.items():
        assert isinstance(loaded.expert_weights_[name], np.ndarray)
        np.testing.assert_allclose(loaded.expert_weights_[name], weight)
    np.testing.assert_allclose(loaded.predict_proba(X_test), clf.predict_proba(X_test))


@pytest.mark.parametrize("params", [{"calibration": "temperature"}, {"cv": None}])
def test_multilabel_weights_not_fitted_are_ones_per_label(params):
    X, Y = _one_label_per_view(n=120)
    clf = I2M2Classifier(max_epochs=3, random_state=0, **params).fit(X, Y)
    assert clf.temperature_ != 1.0
    for weight in clf.expert_weights_.values():
        assert isinstance(weight, np.ndarray) and weight.shape == (2,)
        np.testing.assert_array_equal(weight, np.ones(2))


def test_per_label_weights_export_to_onnx(multilabel_fit, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    clf, X_test = multilabel_fit
    path = to_onnx(clf, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {m: np.asarray(v, np.float32) for m, v in X_test.items()})
    np.testing.assert_allclose(proba, clf.predict_proba(X_test), atol=1e-5)
