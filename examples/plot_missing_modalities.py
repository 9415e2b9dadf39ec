"""
Accuracy as modalities go missing
=================================

In a clinical cohort some patients have no scan and some no labs. An
:class:`~sk_i2m2.I2M2Classifier` predicts for them anyway: a sample misses a
modality when all its values in it are NaN (or when the modality is left out
of ``X``), the missing modality's intra expert abstains, and the inter
expert uses a learned null embedding in its place
(``inter_missing="null"``) or abstains too (``inter_missing="drop"``).

This example trains on complete data from three views of the UCI Multiple
Features digits, hides one view in a growing share of the test samples, and
follows the accuracy. ``modality_dropout`` hides views from the inter expert
during training, so that its null embeddings learn.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

MAX_EPOCHS = 100
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    MAX_EPOCHS = 10
# sphinx_gallery_end_ignore

VIEWS = ["fou", "zer", "mor"]
X, y = load_mfeat(VIEWS)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)

# %%
# Two ways to handle a missing view
# ---------------------------------
# Both models see complete training data. The first trains the inter
# expert's null embeddings by hiding each view of each training sample with
# probability 0.3; the second leaves the inter expert out of a sample's
# product whenever a view is missing.
models = {
    "null embedding, modality_dropout=0.3": I2M2Classifier(
        modality_dropout=0.3, max_epochs=MAX_EPOCHS, random_state=0
    ),
    'inter_missing="drop"': I2M2Classifier(
        inter_missing="drop", max_epochs=MAX_EPOCHS, random_state=0
    ),
}
for model in models.values():
    model.fit(X_train, y_train)

# %%
# Hide one view in a share of the test samples
# --------------------------------------------
# A missing view is a row of NaN. At a share of 1.0 the view is missing in
# every test sample, the same as leaving it out of ``X``.
shares = np.linspace(0, 1, 5)
rng = np.random.RandomState(0)
order = rng.permutation(len(y_test))


def hide(view, share):
    X_missing = {
        name: np.array(values, dtype=np.float32)
        for name, values in X_test.items()
    }
    X_missing[view][order[: round(share * len(y_test))]] = np.nan
    return X_missing


accuracy = {
    (label, view): [model.score(hide(view, share), y_test) for share in shares]
    for label, model in models.items()
    for view in VIEWS
}
for (label, view), scores in accuracy.items():
    print(
        f"{label:38s} without {view}: " + "  ".join(f"{s:.3f}" for s in scores)
    )

# %%
# One view alone
# --------------
# For reference, a model of each view alone (with a single modality the
# classifier is one unimodal expert).
single = {
    view: I2M2Classifier(max_epochs=MAX_EPOCHS, random_state=0)
    .fit({view: X_train[view]}, y_train)
    .score({view: X_test[view]}, y_test)
    for view in VIEWS
}
print({view: round(score, 3) for view, score in single.items()})

# %%
# Plot
# ----
# Solid lines: null embeddings; dashed: inter expert dropped. The dotted
# lines mark each view's model alone.
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
colors = dict(zip(VIEWS, plt.get_cmap("tab10").colors))
for (label, view), scores in accuracy.items():
    style = "-" if label.startswith("null") else "--"
    ax.plot(
        shares,
        scores,
        style,
        marker="o",
        color=colors[view],
        label=f"without {view} ({'null' if style == '-' else 'drop'})",
    )
for view, score in single.items():
    ax.axhline(score, color=colors[view], linestyle=":", linewidth=1)
ax.set_xlabel("share of test samples missing the view")
ax.set_ylabel("test accuracy")
ax.set_title("I2M2 on mfeat fou+zer+mor with one view going missing")
ax.legend(fontsize=8, ncol=2)
plt.show()
