"""
=====================================
Survival with a table and an image
=====================================

:class:`~sk_i2m2.I2M2SurvivalAnalysis` models a time to event from several
modalities as a product of hazards: one Cox expert per modality and one on
all of them fused, whose log-risks add up to the patient's log-hazard.

This example draws patients with a clinical table and an image
(:func:`~sk_i2m2.datasets.make_survival_digits`: the hazard depends on the
digit shown, on a clinical variable and on their pairing), hides the image
of a third of them, and compares I2M2 with a Cox model on held-out
patients: their concordance, Kaplan-Meier curves of the predicted risk
groups, and the per-expert terms of one patient's risk. It needs
scikit-survival (``pip install 'sk-i2m2[survival]'``).
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.nonparametric import kaplan_meier_estimator

from sk_i2m2 import I2M2SurvivalAnalysis
from sk_i2m2.datasets import make_survival_digits

MAX_EPOCHS = 100
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    MAX_EPOCHS = 10
# sphinx_gallery_end_ignore

X, y = make_survival_digits(random_state=0)
# A third of the patients have no image: all-NaN rows mark a missing modality.
rng = np.random.default_rng(0)
X["image"][rng.random(len(y)) < 1 / 3] = np.nan
rows = np.arange(len(y))
train, test = train_test_split(
    rows, test_size=0.3, stratify=y["event"], random_state=0
)
X_train, X_test, y_train, y_test = X[train], X[test], y[train], y[test]
print(f"{len(y)} patients, {y['event'].mean():.0%} with an observed event")

# %%
# I2M2 and a Cox model
# --------------------
# ``score`` is Harrell's concordance index, as for scikit-survival's
# estimators. ``modality_dropout`` trains the inter expert for patients
# without an image. The Cox model sees the table and the 64 pixels, with
# missing images imputed by the mean image.
model = I2M2SurvivalAnalysis(
    max_epochs=MAX_EPOCHS, modality_dropout=0.3, random_state=0
)
model.fit(X_train, y_train)


def flat(X):
    return np.hstack([X["clinical"], X["image"].reshape(len(X["image"]), -1)])


cox = make_pipeline(
    SimpleImputer(), StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)
)
cox.fit(flat(X_train), y_train)
print(f"I2M2 C-index {model.score(X_test, y_test):.3f}")
print(f"Cox  C-index {cox.score(flat(X_test), y_test):.3f}")

# %%
# Kaplan-Meier curves of the predicted risk groups
# ------------------------------------------------
# The held-out patients are split into three groups at the terciles of the
# training patients' risk scores; a model that ranks patients well
# separates the groups' survival curves.
cuts = np.quantile(model.predict(X_train), [1 / 3, 2 / 3])
group = np.digitize(model.predict(X_test), cuts)
fig, ax = plt.subplots(figsize=(6, 4))
for g, label in enumerate(["low risk", "medium risk", "high risk"]):
    time, survival = kaplan_meier_estimator(
        y_test["event"][group == g], y_test["time"][group == g]
    )
    ax.step(
        time, survival, where="post", label=f"{label} ({np.sum(group == g)})"
    )
ax.set_xlabel("time")
ax.set_ylabel("survival probability (Kaplan-Meier)")
ax.set_title("Held-out patients by I2M2's predicted risk")
ax.legend()
fig.tight_layout()

# %%
# Predicted survival and one patient's risk, expert by expert
# ------------------------------------------------------------
# The log-hazard of a patient is the sum of the experts' terms
# (``modality_contributions``); a patient without an image gets nothing
# from the image expert. ``predict_survival_function`` turns the risk into
# a survival curve with the Breslow baseline hazard of the training rows.
has_image = ~np.isnan(X_test["image"]).reshape(len(test), -1).all(axis=1)
patients = [np.flatnonzero(has_image)[0], np.flatnonzero(~has_image)[0]]
terms = model.modality_contributions(X_test[patients])
print(terms.round(3))
curves = model.predict_survival_function(X_test[patients])

fig, (left, right) = plt.subplots(
    1, 2, figsize=(7.2, 3.4), layout="constrained"
)
for curve, name in zip(curves, ["with image", "without image"]):
    left.step(curve.x, curve(curve.x), where="post", label=f"patient {name}")
left.set_xlabel("time")
left.set_ylabel("predicted survival")
left.legend()
width = 0.38
positions = np.arange(len(terms.columns))
for i in range(len(patients)):
    right.bar(positions + (i - 0.5) * width, terms.iloc[i], width)
right.set_xticks(positions, terms.columns)
right.axhline(0, color="grey", linewidth=0.8)
right.set_ylabel("term in the log-hazard")
# One legend for both panels (same colours): the bars leave it no room.
plt.show()
