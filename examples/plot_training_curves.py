"""
==============================
Learning curves of both stages
==============================

:class:`~sk_i2m2.I2M2Classifier` trains in two stages, each a skorch net
with its own ``history``:

1. ``pretrain_net_`` trains every expert on its own loss and keeps each
   expert's best epoch on the validation split;
2. ``finetune_net_`` fine-tunes the product of the experts at a 10 times
   lower learning rate and keeps the product's best epoch.

This example plots both histories for three views of the bundled
handwritten digits.
"""

# %%
# Fit
# ---
# ``verbose=1`` prints one line per stage.
import numpy as np

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

X, y = load_mfeat(["fou", "zer", "mor"])
clf = I2M2Classifier(max_epochs=100, random_state=0, verbose=1)
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run on
# a stratified subsample of 600 digits.
import os

from sklearn.model_selection import train_test_split

if os.environ.get("SK_I2M2_DOCS_FAST") == "1":
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=600, stratify=y, random_state=0
    )
    X, y = X[np.sort(keep)], y[np.sort(keep)]
    clf.set_params(max_epochs=15)
# sphinx_gallery_end_ignore
clf.fit(X, y)

# %%
# The histories
# -------------
# In stage 1, ``train_loss`` and ``valid_loss`` are the *sum* of the losses
# of the experts still training; each expert's validation loss is in
# ``valid_loss_<expert>`` until the epoch it stopped, and
# :class:`~sk_i2m2.callbacks.ExpertCheckpoint` records the epoch whose
# weights it restored for each expert. (Below 1000 rows, a linear expert
# is solved before stage 1, which then has no curve of it.) In stage 2 the
# losses are those of the product of experts.
pretrain = clf.pretrain_net_.history
finetune = clf.finetune_net_.history
checkpoint = dict(clf.pretrain_net_.callbacks_)["expert_checkpoint"]
print("stage 1 best epoch per expert:", checkpoint.best_epoch_)
early_stopping = dict(clf.finetune_net_.callbacks_)["early_stopping"]
finetune_best = early_stopping.best_epoch_
print("stage 2 best epoch:", finetune_best)

# %%
# Plot
# ----
# Top: stage 1's training and validation loss (summed over the experts,
# thick lines) and each expert's validation loss, with a dot at the epoch
# kept for that expert. Bottom: the product's training and validation loss in
# stage 2, which starts from the pretrained experts.
import matplotlib.pyplot as plt

fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.2, 7), layout="constrained")
epochs = np.arange(1, len(pretrain) + 1)
ax1.plot(
    epochs, pretrain[:, "train_loss"], "k-", linewidth=2, label="train (sum)"
)
ax1.plot(
    epochs,
    pretrain[:, "valid_loss"],
    "k--",
    linewidth=2,
    label="validation (sum)",
)
for name in clf.expert_names_:
    if name in checkpoint.pretrained:  # solved before stage 1: no curve
        continue
    losses = pretrain[:, f"valid_loss_{name}"]
    epochs = np.arange(1, len(losses) + 1)
    (line,) = ax1.plot(epochs, losses, label=f"validation: {name}")
    best = checkpoint.best_epoch_[name]
    ax1.plot(best, losses[best - 1], "o", color=line.get_color())
ax1.set_title("stage 1: experts trained on their own")
ax1.set_xlabel("epoch")
ax1.set_ylabel("cross-entropy")
ax1.set_yscale("log")
ax1.legend(fontsize=8)

epochs = np.arange(1, len(finetune) + 1)
ax2.plot(epochs, finetune[:, "train_loss"], label="train")
ax2.plot(epochs, finetune[:, "valid_loss"], label="validation")
ax2.plot(
    finetune_best,
    finetune[finetune_best - 1, "valid_loss"],
    "ko",
    label="kept",
)
ax2.set_title("stage 2: product of experts fine-tuned")
ax2.set_xlabel("epoch")
ax2.set_ylabel("loss of the product")
ax2.legend()
plt.show()
