"""Temperature scaling of the product of experts."""

import numpy as np
import pytest
import torch
from conftest import make_independent
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2.training.calibration import fit_temperature


def test_fit_temperature_recovers_the_temperature_of_overconfident_logits():
    generator = torch.Generator().manual_seed(0)
    true_logits = 1.5 * torch.randn(4000, 3, generator=generator)
    y = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    assert fit_temperature(3.0 * true_logits, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(0.7 * true_logits, y) == pytest.approx(0.7, rel=0.1)
    assert fit_temperature(0.1 * true_logits, y) == 0.5  # sharpening is bounded
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0


@pytest.fixture(scope="module")
def overconfident():
    """A product of four experts on weak, independent signals: overconfident."""
    X, y = make_independent(500, n_modalities=3, shift=0.35)
    X_train, X_test, y_train, y_test = train_test_split(
        ModalityDict(X), y, test_size=0.5, random_state=0, stratify=y
    )
    fits = {
        calibration: I2M2Classifier(
            calibration=calibration, max_epochs=40, n_iter_no_change=20, random_state=0
        ).fit(X_train, y_train)
        for calibration in (None, "temperature")
    }
    return fits, X_test, y_test


def test_calibration_lowers_held_out_log_loss_and_keeps_predictions(overconfident):
    fits, X_test, y_test = overconfident
    raw, calibrated = fits[None], fits["temperature"]
    assert raw.temperature_ == 1.0
    assert calibrated.temperature_ > 1.05  # the product was overconfident
    np.testing.assert_array_equal(raw.predict(X_test), calibrated.predict(X_test))
    assert log_loss(y_test, calibrated.predict_proba(X_test)) < log_loss(
        y_test, raw.predict_proba(X_test)
    )


def test_temperature_lowers_the_validation_nll(overconfident):
    """On the rows it was fitted on, the temperature can only lower the NLL."""
    fits, _, _ = overconfident
    net = fits["temperature"].finetune_net_
    valid = net.train_split.keywords["valid_ds"]  # skorch's predefined_split
    logits = net.forward(valid).sum(0)
    y = valid.y
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / fits["temperature"].temperature_, y) < nll(logits, y)


def test_experts_and_contributions_follow_the_temperature(overconfident):
    fits, X_test, _ = overconfident
    clf = fits["temperature"]
    raw_experts = fits[None].expert_proba(X_test)
    for name, proba in clf.expert_proba(X_test).items():  # experts are not rescaled
        np.testing.assert_allclose(proba, raw_experts[name], atol=1e-6)
    terms = clf.modality_contributions(X_test).to_numpy().sum(1)
    log_proba = clf.predict_log_proba(X_test)
    chosen = log_proba.max(1) - log_proba.mean(1)
    np.testing.assert_allclose(terms, chosen, rtol=1e-4, atol=1e-5)


def test_no_held_out_rows_no_temperature():
    X, y = make_independent(120, n_modalities=2)
    clf = I2M2Classifier(max_epochs=2, early_stopping=False, random_state=0).fit(X, y)
    assert clf.temperature_ == 1.0
