"""
Which modalities and features does the model use?
=================================================

:func:`~sk_i2m2.inspection.permutation_importance` shuffles one modality,
or one feature, across patients and measures how much the fitted model's
score drops on held-out rows. It is scikit-learn's permutation importance
for a dict of modalities.

The cohort here is synthetic, so the answer is known: the label depends on
two lab values (``crp`` and ``lactate``) and on the bright spot of a small
scan; the vital signs and the other labs are noise. One patient in five has
no labs at all.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2.encoders import Conv2dEncoder
from sk_i2m2.inspection import (
    permutation_importance,
    plot_permutation_importance,
)

N_TRAIN, N_TEST, MAX_EPOCHS, N_REPEATS = 3000, 1000, 100, 10
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    N_TRAIN, N_TEST, MAX_EPOCHS, N_REPEATS = 1000, 200, 5, 2
# sphinx_gallery_end_ignore

# %%
# A cohort with known signal
# --------------------------

rng = np.random.RandomState(0)
n = N_TRAIN + N_TEST
labs = pd.DataFrame(
    rng.randn(n, 6),
    columns=["crp", "lactate", "hb", "wbc", "sodium", "creatinine"],
)
vitals = pd.DataFrame(
    rng.randn(n, 3), columns=["heart_rate", "resp_rate", "temperature"]
)
scan = rng.randn(n, 1, 8, 8).astype(np.float32)
spot = scan[:, 0, 2:5, 2:5].mean(axis=(1, 2))
risk = labs["crp"] + 0.7 * labs["lactate"] + 3 * spot
y = (risk.to_numpy() + 0.3 * rng.randn(n) > 0).astype(int)
labs.iloc[rng.rand(n) < 0.2] = np.nan  # patients without labs

X = ModalityDict(labs=labs, vitals=vitals, scan=scan)
X_train, X_test = X[:N_TRAIN], X[N_TRAIN:]
y_train, y_test = y[:N_TRAIN], y[N_TRAIN:]

# One conv block is plenty for an 8x8 scan.
clf = I2M2Classifier(
    encoders={"scan": Conv2dEncoder(channels=(8,))},
    max_epochs=MAX_EPOCHS,
    lr=3e-3,
    random_state=0,
)
clf.fit(X_train, y_train)
print(f"held-out accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# Whole modalities
# ----------------
# ``by="modality"`` (the default) gives each patient another patient's
# whole table row or scan. Patients without labs keep having none: the
# values are shuffled among the patients who have them.

by_modality = permutation_importance(
    clf, X_test, y_test, n_repeats=N_REPEATS, random_state=0
)
print(
    pd.DataFrame(
        {
            "mean": by_modality.importances_mean,
            "std": by_modality.importances_std,
        },
        index=by_modality.feature_names,
    )
)

# %%
# Single features
# ---------------
# ``by="feature"`` shuffles one column at a time, inside the vector
# modalities (the scan, an image, has no columns: leave it out with
# ``modalities``, or see integrated gradients in the user guide).
# DataFrame columns name the features. ``scoring`` takes any scikit-learn
# scorer; the log-loss also sees changes of confidence that leave the
# predicted class unchanged.

by_feature = permutation_importance(
    clf,
    X_test,
    y_test,
    by="feature",
    modalities=["labs", "vitals"],
    scoring="neg_log_loss",
    n_repeats=N_REPEATS,
    random_state=0,
)
print(
    pd.DataFrame(
        {"modality": by_feature.modality, "mean": by_feature.importances_mean},
        index=by_feature.feature_names,
    ).sort_values("mean", ascending=False)
)

# %%
# Both results, one above the other: bars are the mean drop in score over the
# repeats, with its standard deviation; the dashed line is no effect.

fig, axes = plt.subplots(2, 1, figsize=(7.2, 6.5), layout="constrained")
plot_permutation_importance(by_modality, ax=axes[0])
axes[0].set_title("by modality (accuracy)")
plot_permutation_importance(by_feature, ax=axes[1], top=6)
axes[1].set_title("by feature, top 6 (log-loss)")
plt.show()
