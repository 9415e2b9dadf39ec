"""
=================================================================
A clinical table and an image in a grouped cross-validated search
=================================================================

A typical clinical study: every patient has a diagnosis, a few clinical
variables (numeric and categorical, on their raw scales) and several images
taken at different visits. This example

- preprocesses the table inside the model with
  :class:`~sk_i2m2.PerModality` and a ``ColumnTransformer``, for a cohort
  where some patients have no clinical table at all and others no scan,
- searches the model (intra, inter, I2M2; two encoder widths) with
  ``GridSearchCV``,
- keeps all rows of a patient in the same fold with ``GroupKFold``, and
  shows how much an ungrouped split would overstate the score,
- compares the model with the logistic regression a statistician would fit,
  and draws a reliability diagram of both (are the probabilities
  calibrated?).

The data are generated from the bundled handwritten digits: each patient has
a "lesion type" (a digit, more often 5 to 9 with the diagnosis), and each
visit's image is a different handwritten example of that digit.
"""

# %%
# A cohort with several visits per patient
# ----------------------------------------
import numpy as np
import pandas as pd

from sk_i2m2 import ModalityDict
from sk_i2m2.datasets import load_mfeat

rng = np.random.RandomState(0)
n_patients = 200
n_visits = 3
max_epochs = 60  # of the classifier in the pipeline below
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    n_patients, n_visits, max_epochs = 60, 2, 8
# sphinx_gallery_end_ignore

digits, digit_labels = load_mfeat(["pix"], pix_as_image=True)
images = digits["pix"]  # (2000, 1, 16, 15) grayscale digits

diagnosis = rng.randint(0, 2, n_patients)
# The lesion type agrees with the diagnosis for 75 % of the patients.
agrees = rng.rand(n_patients) < 0.75
high = np.where(agrees, diagnosis, 1 - diagnosis)
lesion = np.where(
    high == 1, rng.randint(5, 10, n_patients), rng.randint(0, 5, n_patients)
)

patient = np.repeat(np.arange(n_patients), n_visits)  # visit -> patient id
y = diagnosis[patient]
scan = np.stack(
    [
        images[rng.choice(np.flatnonzero(digit_labels == d))]
        for d in lesion[patient]
    ]
)

# Patient-level variables, repeated on each visit, and a per-visit biomarker.
age = (62 + 9 * rng.randn(n_patients) + 4 * diagnosis)[patient]
baseline = rng.lognormal(1.0, 0.5, n_patients)
clinical = pd.DataFrame(
    {
        "age": age.round(),
        "crp": (
            baseline[patient] * np.exp(0.35 * y + 0.2 * rng.randn(len(y)))
        ).round(2),
        "sex": rng.choice(["F", "M"], n_patients)[patient],
        "site": rng.choice(["north", "south", "east"], n_patients)[patient],
    }
)
# Some patients were never seen in the clinic: their rows of the table are
# all NaN (``None`` in the text columns), the convention for a missing
# modality.
no_table = (rng.rand(n_patients) < 0.15)[patient]
clinical[no_table] = np.nan
# Some visits have no usable scan: an all-NaN image. Every visit keeps at
# least one modality.
no_scan = (rng.rand(len(y)) < 0.1) & ~no_table
scan[no_scan] = np.nan
X = ModalityDict(clinical=clinical, scan=scan)
print(X)
print(
    f"{no_table.mean():.0%} of the visits have no clinical table, "
    f"{no_scan.mean():.0%} no scan"
)
clinical.head()

# %%
# The pipeline
# ------------
# Numeric columns are scaled and categorical ones one-hot encoded inside the
# pipeline, so each fold's preprocessing is fitted on that fold's training
# rows only. ``PerModality`` fits the ``ColumnTransformer`` on the patients
# who have a table and returns all-NaN rows for the others, so the scaler's
# means and the encoder's categories come from real rows and the classifier
# sees those patients as missing the table: its clinical expert abstains on
# them and the inter expert uses its learned null embedding. The scan is not
# listed in ``PerModality``: it passes through and the classifier
# standardises it itself.
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sk_i2m2 import I2M2Classifier, PerModality
from sk_i2m2.encoders import MLPEncoder

pipe = Pipeline(
    [
        (
            "prep",
            PerModality(
                {
                    "clinical": ColumnTransformer(
                        [
                            ("num", StandardScaler(), ["age", "crp"]),
                            (
                                "cat",
                                OneHotEncoder(
                                    sparse_output=False,
                                    handle_unknown="ignore",
                                ),
                                ["sex", "site"],
                            ),
                        ]
                    ),
                }
            ),
        ),
        (
            "clf",
            I2M2Classifier(
                encoders={"clinical": MLPEncoder()},
                max_epochs=max_epochs,
                random_state=0,
            ),
        ),
    ]
)

# %%
# Grouped grid search
# -------------------
# ``GroupKFold`` with the patient ids as ``groups`` keeps every visit of a
# patient in the same fold.
from sklearn.model_selection import GridSearchCV, GroupKFold

grid = {
    "clf__dependencies": ["intra", "inter", "both"],
    "clf__encoders__clinical__hidden_sizes": [(16,), (64, 32)],
}
search = GridSearchCV(pipe, grid, cv=GroupKFold(n_splits=3), scoring="roc_auc")
search.fit(X, y, groups=patient)
print("best:", search.best_params_, f"AUROC {search.best_score_:.3f}")

results = pd.DataFrame(search.cv_results_)
results["dependencies"] = results["param_clf__dependencies"]
hidden_sizes = results["param_clf__encoders__clinical__hidden_sizes"]
results["hidden_sizes"] = hidden_sizes.astype(str)
results[["dependencies", "hidden_sizes", "mean_test_score", "std_test_score"]]

# %%
# Leakage across visits
# ---------------------
# A shuffled ``KFold`` puts visits of the same patient in both the training
# and the test folds. The model can then recognise the patient (their
# lesion digit, their biomarker level) instead of generalising to new
# patients, and the score is optimistic.
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score

best = clone(search.best_estimator_)
grouped = cross_val_score(
    best, X, y, groups=patient, cv=GroupKFold(n_splits=3), scoring="roc_auc"
)
ungrouped = cross_val_score(
    best,
    X,
    y,
    cv=KFold(n_splits=3, shuffle=True, random_state=0),
    scoring="roc_auc",
)
print(
    f"GroupKFold AUROC {grouped.mean():.3f}, "
    f"shuffled KFold AUROC {ungrouped.mean():.3f}"
)

# %%
# Patients with and without a table
# ---------------------------------
# The fitted search predicts for every patient, whether or not they have a
# table, and for new patients who come with a scan only (the table left out
# of ``X``).
fitted = search.best_estimator_
print(
    "share of training visits without a table:",
    f"{fitted.named_steps['clf'].missing_rate_['clinical']:.2f}",
)
proba = fitted.predict_proba(X)[:, 1]
has_scan = ~no_scan
scan_only = fitted.predict_proba({"scan": X["scan"][has_scan]})[:, 1]
# A row of NaN and a table left out of X are the same missing modality.
assert np.allclose(
    proba[has_scan & no_table], scan_only[no_table[has_scan]], atol=1e-6
)
change = np.abs(proba[has_scan] - scan_only)[~no_table[has_scan]].mean()
print(
    "mean change the table makes to P(diagnosis) where there is one: "
    f"{change:.3f}"
)

# %%
# Against logistic regression, and calibration
# --------------------------------------------
# The model a statistician would fit: a logistic regression on the
# concatenated, standardised features (the one-hot table and the scan's
# pixels), with missing values imputed by the training mean. Both models are
# scored on the same patient-grouped out-of-fold predictions. Calibration:
# in each bin of predicted probability, the share of visits with the
# diagnosis should match the mean prediction (the diagonal).
from sklearn.calibration import calibration_curve
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import cross_val_predict

one_hot = pd.get_dummies(clinical, columns=["sex", "site"], dtype=float)
one_hot[no_table] = np.nan  # get_dummies makes zeros of a missing category
flat = np.hstack([one_hot.to_numpy(), scan.reshape(len(scan), -1)])
logistic = Pipeline(
    [
        ("impute", SimpleImputer()),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(max_iter=2000)),
    ]
)
folds = GroupKFold(n_splits=3)
oof = {
    "I2M2 (best of the search)": cross_val_predict(
        clone(search.best_estimator_),
        X,
        y,
        groups=patient,
        cv=folds,
        method="predict_proba",
    )[:, 1],
    "logistic regression": cross_val_predict(
        logistic, flat, y, groups=patient, cv=folds, method="predict_proba"
    )[:, 1],
}
for name, p in oof.items():
    auroc, brier = roc_auc_score(y, p), brier_score_loss(y, p)
    accuracy = ((p > 0.5) == y).mean()
    print(
        f"{name:27s} AUROC {auroc:.3f}  Brier {brier:.3f}  "
        f"accuracy {accuracy:.3f}"
    )


# %%
# Plot
# ----
# Cross-validated AUROC of each candidate (mean and standard deviation over
# the patient-grouped folds), and the grouped against the ungrouped estimate
# for the best candidate.
import matplotlib.pyplot as plt

fig, axes = plt.subplot_mosaic(
    [["search", "search"], ["best", "reliability"]],
    figsize=(7.2, 7),
    width_ratios=[1, 1.6],
    layout="constrained",
)
ax1, ax2, ax3 = axes["search"], axes["best"], axes["reliability"]
sizes = list(dict.fromkeys(results["hidden_sizes"]))
width = 0.8 / len(sizes)
for i, size in enumerate(sizes):
    part = results[results["hidden_sizes"] == size].set_index("dependencies")
    part = part.loc[grid["clf__dependencies"]]
    positions = np.arange(len(part)) + (i - (len(sizes) - 1) / 2) * width
    ax1.bar(
        positions,
        part["mean_test_score"],
        width,
        yerr=part["std_test_score"],
        capsize=3,
        label=f"clinical MLP {size}",
    )
ax1.set_xticks(np.arange(3))
ax1.set_xticklabels(["intra", "inter", "I2M2 (both)"])
ax1.set_ylabel("AUROC, GroupKFold (3 folds)")
ax1.set_ylim(0.5, 1.0)
ax1.legend(fontsize=8, loc="lower right")
ax1.set_title("Grid search over the model")

ax2.bar(
    [0, 1],
    [grouped.mean(), ungrouped.mean()],
    yerr=[grouped.std(), ungrouped.std()],
    capsize=3,
    color=["#55a868", "#c44e52"],
)
ax2.set_xticks([0, 1])
ax2.set_xticklabels(["grouped\nby patient", "shuffled\nvisits"])
ax2.set_ylim(0.5, 1.0)
ax2.set_title("Best model")

ax3.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
for name, p in oof.items():
    observed, predicted = calibration_curve(y, p, n_bins=8)
    ax3.plot(predicted, observed, marker="o", label=name)
ax3.set_xlabel("mean predicted P(diagnosis)")
ax3.set_ylabel("observed share")
ax3.set_title("Reliability (out of fold)")
ax3.legend(fontsize=8, loc="upper left")
plt.show()
