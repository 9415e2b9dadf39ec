"""
=====================================
Regression with Gaussian experts
=====================================

:class:`~sk_i2m2.I2M2Regressor` predicts a continuous outcome as the
product of Gaussian experts: each expert (one per modality, one on all of
them fused) predicts a mean and a variance, and the model's prediction is
their precision-weighted mean, with a standard deviation.

This example splits scikit-learn's diabetes data (disease progression one
year after baseline, 442 patients) into two views, demographics and
examination (age, sex, BMI, blood pressure) and six blood serum
measurements, compares I2M2 with ridge regression on both views, and plots
the predictions with their uncertainty and each expert's weight in them.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_i2m2 import I2M2Regressor, ModalityDict

MAX_EPOCHS = 100
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    MAX_EPOCHS = 10
# sphinx_gallery_end_ignore

data = load_diabetes()
X = ModalityDict(demographics=data.data[:, :4], serum=data.data[:, 4:])
y = data.target
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=0
)

# %%
# Fit and score
# -------------
# ``score`` is R², as for any scikit-learn regressor. The ridge baseline
# sees both views concatenated.
reg = I2M2Regressor(max_epochs=MAX_EPOCHS, random_state=0)
reg.fit(X_train, y_train)
ridge = make_pipeline(StandardScaler(), RidgeCV())
ridge.fit(np.hstack([X_train["demographics"], X_train["serum"]]), y_train)
ridge_r2 = ridge.score(
    np.hstack([X_test["demographics"], X_test["serum"]]), y_test
)
print(f"I2M2 R² {reg.score(X_test, y_test):.3f}, ridge R² {ridge_r2:.3f}")

# %%
# Predictions with their uncertainty
# ----------------------------------
# ``predict(X, return_std=True)`` also returns the product's standard
# deviation, calibrated on the validation rows (``temperature_``). About
# 68 % of the outcomes should fall within one standard deviation.
mean, std = reg.predict(X_test, return_std=True)
inside = np.mean(np.abs(y_test - mean) <= std)
print(f"within one std: {inside:.0%} (temperature {reg.temperature_:.2f})")

order = np.argsort(mean)
fig, ax = plt.subplots(figsize=(7.2, 4), layout="constrained")
ax.errorbar(
    np.arange(len(order)),
    mean[order],
    yerr=std[order],
    fmt=".",
    alpha=0.6,
    label="I2M2 ± std",
)
ax.plot(
    np.arange(len(order)), y_test[order], "k.", markersize=4, label="outcome"
)
ax.set_xlabel("test patient (sorted by prediction)")
ax.set_ylabel("disease progression")
ax.legend()
plt.show()

# %%
# Each expert's weight
# --------------------
# In a product of Gaussians an expert's weight in a prediction is its
# share of the total precision, sample by sample.
means, stds = reg.expert_predict(X_test, return_std=True)
precisions = {name: 1 / s**2 for name, s in stds.items()}
total = sum(precisions.values())
fig, ax = plt.subplots(figsize=(7.2, 3.5), layout="constrained")
ax.boxplot([precisions[name] / total for name in reg.expert_names_])
ax.set_xticks(range(1, len(reg.expert_names_) + 1), reg.expert_names_)
ax.set_ylabel("share of the precision")
ax.set_title("weight of each expert in the product")
plt.show()
