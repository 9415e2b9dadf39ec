"""
=========================================
Conformal prediction sets with MAPIE
=========================================

A clinician may ask for "a set of diagnoses that contains the right one 90 %
of the time" rather than one label. Split conformal prediction gives such
sets around any fitted classifier: it scores how unusual the true label is
on held-out calibration rows, and at prediction time keeps every label that
is no more unusual than the chosen quantile of those scores. The guarantee
(the set holds the true label with probability at least the confidence
level, on average over patients) needs no assumption on the model, only
that calibration and new patients come from the same population.

This example wraps a fitted :class:`~sk_i2m2.I2M2Classifier` in MAPIE's
``SplitConformalClassifier`` (``pip install "sk-i2m2[conformal]"``), on two
views of the UCI Multiple Features digits standing in for patients' data,
and reports on held-out rows the empirical coverage and the mean set size
at 80, 90 and 95 % confidence, with and without sk-i2m2's temperature
calibration. MAPIE selects rows with scikit-learn's tools, so the
modalities go in as a :class:`~sk_i2m2.ModalityDict` (a plain dict fails
inside MAPIE: its keys are counted as samples).
"""

import matplotlib.pyplot as plt
import numpy as np
from mapie.classification import SplitConformalClassifier
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

MAX_EPOCHS = 30
LEVELS = [0.8, 0.9, 0.95]
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

FAST = os.environ.get("SK_I2M2_DOCS_FAST") == "1"
if FAST:
    MAX_EPOCHS = 5
# sphinx_gallery_end_ignore

X, y = load_mfeat(["fou", "zer"])  # a ModalityDict
# Half the rows to fit, a quarter to calibrate the sets, a quarter to test
# them.
X_fit, X_rest, y_fit, y_rest = train_test_split(
    X, y, test_size=0.5, random_state=0, stratify=y
)
X_calib, X_test, y_calib, y_test = train_test_split(
    X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
)

# %%
# Fit, then conformalize on the calibration rows
# ----------------------------------------------
#
# ``prefit=True``: MAPIE uses the fitted model as it is and only computes
# the conformity scores (here ``1 - p(true label)``) on the calibration rows.
# The same model is fitted twice, with a temperature calibrating its
# probabilities and without it.

results = {}
for calibration in ("temperature", None):
    clf = I2M2Classifier(
        calibration=calibration, max_epochs=MAX_EPOCHS, random_state=0
    )
    clf.fit(X_fit, y_fit)
    mapie = SplitConformalClassifier(
        estimator=clf, confidence_level=LEVELS, prefit=True
    )
    mapie.conformalize(X_calib, y_calib)
    # (n_test, n_classes, n_levels) booleans
    _, sets = mapie.predict_set(X_test)
    true_column = np.searchsorted(clf.classes_, y_test)
    coverage = sets[np.arange(len(y_test)), true_column].mean(axis=0)
    size = sets.sum(axis=1).mean(axis=0)
    results[str(calibration)] = (coverage, size, clf.temperature_)
    accuracy = clf.score(X_test, y_test)
    print(
        f"calibration={calibration!s:<11} "
        f"temperature_={clf.temperature_:.2f}  accuracy={accuracy:.3f}"
    )
    for level, cov, sz in zip(LEVELS, coverage, size):
        print(f"  {level:.0%} sets: coverage {cov:.3f}, mean size {sz:.2f}")

# %%
# Coverage and set size
# ---------------------
#
# Both models reach the requested coverage on the test rows (up to the
# sampling noise of 500 rows, about 2 points): that is the conformal
# guarantee, whatever the model's calibration. What calibration could change
# is the size of the sets, the quantity to compare models on: smaller sets at
# the same coverage are more useful at the bedside. A temperature divides
# every patient's logits by the same number, which keeps each patient's
# ranking of the labels; the conformal threshold, learnt on the calibration
# rows, moves with it, so the sets change only where the temperature
# reorders patients' probabilities of their labels. Here the two models give
# sets of nearly the same size at every level. A mean size below 1 means
# that some sets are empty: for those patients no label is likely enough at
# that level, a signal worth showing rather than hiding.

fig, (ax_cov, ax_size) = plt.subplots(
    2, 1, figsize=(7.2, 6), sharex=True, layout="constrained"
)
width = 0.35
positions = np.arange(len(LEVELS))
for offset, (name, (coverage, size, temperature)) in zip(
    (-width / 2, width / 2), results.items()
):
    label = f"calibration={name} (T={temperature:.2f})"
    ax_cov.bar(positions + offset, coverage, width, label=label)
    ax_size.bar(positions + offset, size, width, label=label)
ax_cov.plot(positions, LEVELS, "k_", markersize=30, label="requested")
ax_cov.set(
    xticks=positions,
    xticklabels=[f"{level:.0%}" for level in LEVELS],
    ylim=(0.6, 1.0),
    ylabel="coverage on test rows",
)
ax_size.set(
    xticks=positions,
    xticklabels=[f"{level:.0%}" for level in LEVELS],
    xlabel="confidence level",
    ylabel="mean set size (labels)",
)
# Above the panels, where it hides no bar.
ax_cov.legend(
    loc="lower left",
    bbox_to_anchor=(0, 1.02),
    ncols=3,
    fontsize=8,
    frameon=False,
)
plt.show()

# %%
# Regression
# ----------
#
# MAPIE's ``SplitConformalRegressor(estimator=reg, prefit=True)`` gives
# intervals around a fitted :class:`~sk_i2m2.I2M2Regressor` in the same way
# (``conformalize`` then ``predict_interval``), again with a ``ModalityDict``.
