"""
Which dependencies drive my data?
=================================

Before choosing between a per-modality model, a fused model and I2M2, it
helps to know where the label lives: in each modality on its own
(*intra-modality* dependencies), in the interaction of the modalities
(*inter-modality* dependencies), or in both.
:func:`~sk_i2m2.inspection.dependency_report` answers with one I2M2 fit per
cross-validation fold: it scores every modality's expert, their product
(``intra``), the inter expert, I2M2 itself and the class prior on the same
test rows, and states a verdict.

This example runs it on two offline data sets: two views of the UCI
Multiple Features digits, and synthetic data whose label is the XOR of a
latent in each modality.
"""

import matplotlib.pyplot as plt
import pandas as pd

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat, make_multimodal_classification
from sk_i2m2.inspection import dependency_report, plot_dependency_report

N_SAMPLES, MAX_EPOCHS, CV = 1000, 100, 5
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

FAST = os.environ.get("SK_I2M2_DOCS_FAST") == "1"
if FAST:
    N_SAMPLES, MAX_EPOCHS, CV = 300, 15, 3
# sphinx_gallery_end_ignore

pd.set_option("display.max_columns", None)
pd.set_option("display.width", 120)
pd.set_option("display.precision", 3)

# %%
# Two views of handwritten digits
# -------------------------------
# The Fourier (``fou``) and Zernike (``zer``) views describe the same 2000
# digit images. Each view recognises digits well on its own, so the
# product of the per-view experts should already be strong.

X_digits, y_digits = load_mfeat(["fou", "zer"])
# sphinx_gallery_start_ignore
if FAST:
    # Every few rows: the labels come in blocks of 200 per digit.
    X_digits, y_digits = X_digits[::4], y_digits[::4]
# sphinx_gallery_end_ignore

clf = I2M2Classifier(max_epochs=MAX_EPOCHS, random_state=0)
digits_report = dependency_report(clf, X_digits, y_digits, cv=CV)
print(digits_report)
print(digits_report.attrs["verdict"])

# %%
# ``agreement`` is the share of test samples where a model predicts what
# I2M2 predicts, and ``mean_entropy`` how unsure it is (0 certain, 1
# uniform). The per-fold scores behind the means and the verdict:

print(digits_report.attrs["fold_scores"])

# %%
# Label in the interaction of modalities
# --------------------------------------
# :func:`~sk_i2m2.datasets.make_multimodal_classification` with
# ``intra_strength=0`` gives each modality no information about the label
# on its own; only their interaction does. The single-modality experts and
# their product stay at chance while the inter expert and I2M2 do not.

X_xor, y_xor = make_multimodal_classification(
    N_SAMPLES, intra_strength=0.0, inter_strength=2.0, random_state=0
)
xor_report = dependency_report(clf, X_xor, y_xor, cv=CV)
print(xor_report)
print(xor_report.attrs["verdict"])

# %%
# The experts disagree with each other about as often as coins would: the
# pairwise agreement of the stage-1 experts.

print(xor_report.attrs["agreement_matrix"])

# %%
# Both reports
# ------------
# Bars are the mean score over folds with its standard deviation; the
# dashed line is the class prior.

fig, axes = plt.subplots(2, 1, figsize=(7.2, 8.5), layout="constrained")
plot_dependency_report(digits_report, ax=axes[0])
plot_dependency_report(xor_report, ax=axes[1])
plt.show()
