"""A cross-fitted model keeps the stage whose calibrated product predicts the held-out rows best."""

import numpy as np
import pytest
import torch
from conftest import make_independent

from sk_i2m2 import I2M2Classifier
from sk_i2m2._fit import _held_out
from sk_i2m2.datasets import make_multimodal_classification
from sk_i2m2.nn.ensemble import FoldEnsemble
from sk_i2m2.training.calibration import calibrate_product


def _other_stage_loss(clf, X, y):
    """Calibrated held-out loss of the stage the fit did not keep, recomputed from its nets."""
    other = 0 if clf.final_stage_ == "finetune" else 1
    held_out = []
    for nets in clf.fold_nets_:
        valid = nets[0].train_split.keywords["valid_ds"]
        held_out.append(_held_out(nets[other].module_.eval(), valid, torch.device("cpu"), 1024))
    options = clf._target_outcome(y).stage_options({"classes_": clf.classes_}, y, None)
    attributes = calibrate_product("auto", held_out, options, lambda z: z.log_softmax(-1))
    return attributes["calibration_loss_"]


def _interacting(seed):
    return make_multimodal_classification(
        n_samples=150,
        n_modalities=2,
        n_features=10,
        intra_strength=0.5,
        inter_strength=1.5,
        random_state=seed,
    )


@pytest.mark.parametrize(
    "data, expected",
    [
        # Independent views: the separately trained experts predict better.
        (lambda: make_independent(150, n_modalities=2), "pretrain"),
        # Views that interact: fine-tuning the product jointly pays.
        (lambda: _interacting(0), "finetune"),
    ],
)
def test_the_kept_stage_has_the_lower_calibrated_held_out_loss(data, expected):
    X, y = data()
    clf = I2M2Classifier(random_state=0).fit(X, y)
    assert clf.final_stage_ == expected
    assert clf.calibration_loss_ <= _other_stage_loss(clf, X, y) + 1e-9
    # The model is the kept stage's fold experts, weighted.
    kept = 0 if clf.final_stage_ == "pretrain" else 1
    raw = FoldEnsemble([nets[kept].module_ for nets in clf.fold_nets_])
    if kept == 1:  # the fine-tuned modules are the model itself
        assert all(fold is nets[1].module_ for fold, nets in zip(clf.module_.folds, clf.fold_nets_))
    else:
        factors = torch.tensor(list(clf.expert_weights_.values()), dtype=torch.float64)
        expected = (clf._expert_logits(X, raw)[0].double() * factors.view(-1, 1, 1)).sum(0)
        np.testing.assert_allclose(
            clf.predict_log_proba(X), expected.log_softmax(-1).numpy(), atol=1e-4
        )


def test_without_stage_2_or_cross_fitting_there_is_no_choice():
    X, y = make_independent(120, n_modalities=2)
    no_stage_2 = I2M2Classifier(finetune_epochs=0, random_state=0).fit(X, y)
    assert no_stage_2.final_stage_ == "pretrain"
    one_split = I2M2Classifier(cv=None, max_epochs=5, random_state=0).fit(X, y)
    assert one_split.final_stage_ == "finetune"
    assert one_split.calibration_loss_ > 0
