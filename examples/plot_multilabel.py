"""
Several findings per sample: multilabel outcomes
================================================

A scan can show several findings at once, and a clinical study often asks
about several outcomes of one patient. With ``y`` an ``(n_samples,
n_labels)`` 0/1 array, :class:`~sk_i2m2.I2M2Classifier` trains one
Bernoulli expert per modality and label and takes their product per label:
the probability of a label is the sigmoid of the experts' summed logits.

This example derives four binary findings from the digit of the UCI
Multiple Features data (three views of each handwritten digit), fits one
multilabel model, and compares the product with each expert alone, label by
label.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

X, digit = load_mfeat(["fou", "zer", "mor"])
FINDINGS = ["even", "at least 5", "prime", "closed loop"]
Y = np.c_[
    digit % 2 == 0,
    digit >= 5,
    np.isin(digit, [2, 3, 5, 7]),
    np.isin(digit, [0, 4, 6, 8, 9]),
].astype(int)
X_train, X_test, Y_train, Y_test = train_test_split(
    X, Y, test_size=0.3, random_state=0
)

# %%
# One model for the four findings
# -------------------------------
# ``predict_proba`` gives the probability of each finding, in scikit-learn's
# multilabel form: one column per label, as ``roc_auc_score`` takes it.
clf = I2M2Classifier(random_state=0)
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    clf.set_params(max_epochs=5, cv=None)
# sphinx_gallery_end_ignore
clf.fit(X_train, Y_train)
proba = clf.predict_proba(X_test)
print("probabilities:", proba.shape, "labels:", clf.predict(X_test).shape)
print("subset accuracy (all four right):", round(clf.score(X_test, Y_test), 3))
print("macro AUROC:", round(roc_auc_score(Y_test, proba, average="macro"), 3))

# %%
# The product against each expert, per finding
# --------------------------------------------
# ``expert_proba`` gives each expert's own probability of each finding. The
# product combines the views' evidence label by label.
experts = clf.expert_proba(X_test)
scores = {"I2M2 (product)": roc_auc_score(Y_test, proba, average=None)}
scores.update(
    {
        name: roc_auc_score(Y_test, p, average=None)
        for name, p in experts.items()
    }
)

fig, ax = plt.subplots(figsize=(7, 3.5))
width = 0.8 / len(scores)
for i, (name, auroc) in enumerate(scores.items()):
    ax.bar(np.arange(len(FINDINGS)) + i * width, auroc, width, label=name)
ax.set_xticks(np.arange(len(FINDINGS)) + 0.4 - width / 2, FINDINGS)
ax.set_ylabel("test AUROC")
ax.set_ylim(0.5, 1.0)
ax.legend(fontsize="small", ncol=2)
ax.set_title("Four findings of a digit: the product and each expert")
fig.tight_layout()

# %%
# Which view argues for which finding
# -----------------------------------
# ``modality_contributions`` splits each finding's log-odds into one term
# per expert; the terms of a sample sum to the model's log-odds.
contributions = clf.modality_contributions(X_test)
print(contributions.abs().mean().unstack().round(2))

# %%
# A small cohort: how much each view counts for each finding
# -----------------------------------------------------------
# Below 2000 samples a multilabel model is cross-fitted, and its
# calibration weighs each expert once per finding on the held-out rows
# (``expert_weights_``, in [0, 1]): each finding's product is its own, so a
# view keeps its say on the findings where it adds to the others and is
# shrunk where it does not.
# Here the inter expert, which reads all three views, carries most of every
# finding, and of the single views the morphological one counts most.
X_small, _, Y_small, _ = train_test_split(
    X_train, Y_train, train_size=300, random_state=0
)
small = I2M2Classifier(random_state=0).fit(X_small, Y_small)
print(pd.DataFrame(small.expert_weights_, index=FINDINGS).round(2))
print(
    "subset accuracy, 300 training samples:",
    round(small.score(X_test, Y_test), 3),
)
