"""
===================================================
Questions about images: a frozen backbone and text
===================================================

Visual question answering (VQA) and NLVR2, the vision-and-language tasks of
the I2M2 paper, pair an image with a sentence and ask for a yes/no answer
that depends on both. This example builds a small offline task of that
shape from the bundled handwritten digits: each sample is a digit image and
a generated question ("is this a 7?", "is the digit even?", "is it larger
than 4?"), and the answer is yes or no.

- The image goes through a **frozen backbone**: a small convolutional
  network pretrained here on other digits, then used as a fixed feature
  extractor with ``ModuleEncoder(..., trainable=False)``. With the
  ``vision`` extra, a pretrained torchvision model takes its place in one
  line, ``encoders={"image": TorchvisionEncoder("resnet18")}``.
- The question goes through a **frozen text embedding**,
  :class:`~sk_i2m2.encoders.TextEmbedding` with a toy hashed bag of words
  (a sentence-transformers model's ``encode`` in a real study).

Both frozen encoders run once per fit, not per batch. The answer depends on
the image and the question *jointly*, so the intra-modality experts alone
cannot answer; the inter expert and I2M2 can.
"""

import time
import zlib
from itertools import pairwise

# %%
# Images and generated questions
# ------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2.encoders import ModuleEncoder, TextEmbedding

rng = np.random.RandomState(0)
torch.manual_seed(0)
digits = load_digits()
# (1797, 1, 8, 8) in [0, 1]
images = (digits.images / 16.0).astype(np.float32)[:, None]
labels = digits.target

# The backbone is "pretrained" on the first 600 digits; the task uses the
# others.
pretrain_images, pretrain_labels = images[:600], labels[:600]
task_images, task_labels = images[600:], labels[600:]


def ask(digit, rng):
    """A question about ``digit`` and its answer: 1 (yes) half of the time."""
    kind = rng.randint(3)
    if kind == 0:
        others = [d for d in range(10) if d != digit]
        asked = digit if rng.rand() < 0.5 else rng.choice(others)
        return f"is this a {asked} ?", int(asked == digit)
    if kind == 1:
        parity = rng.choice(["even", "odd"])
        is_even = digit % 2 == 0
        return f"is the digit {parity} ?", int(is_even == (parity == "even"))
    k = rng.randint(1, 9)
    return f"is it larger than {k} ?", int(digit > k)


n_pairs = 2400
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

FAST = os.environ.get("SK_I2M2_DOCS_FAST") == "1"
if FAST:
    n_pairs = 600
# sphinx_gallery_end_ignore
rows = rng.randint(len(task_images), size=n_pairs)
questions, answers = zip(*(ask(task_labels[i], rng) for i in rows))
X = ModalityDict(
    image=task_images[rows], question=np.array(questions, dtype=object)
)
y = np.array(answers)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=0
)
print(list(X["question"][:3]), y[:3])

# %%
# A frozen image backbone and a frozen text embedding
# ---------------------------------------------------
# The backbone: a small conv net trained to recognise digits, without its last
# layer. Any pretrained ``torch.nn.Module`` mapping images to features works the
# same way.
backbone = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1),
    torch.nn.BatchNorm2d(16),
    torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1),
    torch.nn.BatchNorm2d(32),
    torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(2),
    torch.nn.Flatten(),
)
classifier = torch.nn.Sequential(backbone, torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
xb, yb = torch.as_tensor(pretrain_images), torch.as_tensor(pretrain_labels)
pretrain_epochs = 40
# sphinx_gallery_start_ignore
if FAST:
    pretrain_epochs = 15
# sphinx_gallery_end_ignore
for _ in range(pretrain_epochs):
    for batch in torch.randperm(len(xb)).split(64):
        optimizer.zero_grad()
        logits = classifier(xb[batch])
        torch.nn.functional.cross_entropy(logits, yb[batch]).backward()
        optimizer.step()


def embed(texts, n_features=64):
    """Hashed counts of words and word pairs, standing in for an embedding."""
    out = np.zeros((len(texts), n_features), dtype=np.float32)
    for i, text in enumerate(texts):
        words = text.split()
        for token in words + [a + "_" + b for a, b in pairwise(words)]:
            out[i, zlib.crc32(token.encode()) % n_features] += 1.0
    return out


encoders = {
    "image": ModuleEncoder(backbone.eval(), trainable=False),
    "question": TextEmbedding(embed),
}

# %%
# Intra, inter and I2M2 on the same frozen features
# -------------------------------------------------
max_epochs = 100
# sphinx_gallery_start_ignore
if FAST:
    max_epochs = 15
# sphinx_gallery_end_ignore
scores, fit_seconds = {}, {}
for dependencies in ["intra", "inter", "both"]:
    clf = I2M2Classifier(
        dependencies=dependencies,
        encoders=encoders,
        max_epochs=max_epochs,
        lr=3e-3,
        cv=None,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_seconds[dependencies] = time.perf_counter() - start
    scores[dependencies] = clf.score(X_test, y_test)
    print(
        f"{dependencies:>5}: test accuracy {scores[dependencies]:.3f}, "
        f"frozen modalities {clf.frozen_modalities_}"
    )

# %%
# The intra experts see either the image or the question, never both, so their
# product cannot beat guessing by much; the inter expert reads both (the fused
# frozen features) and answers, and I2M2 keeps that.
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(
    list(scores),
    list(scores.values()),
    color=["tab:gray", "tab:blue", "tab:green"],
)
ax.axhline(
    max(np.mean(y_test), 1 - np.mean(y_test)),
    color="k",
    ls="--",
    label="majority",
)
ax.set_ylim(0.4, 1.0)
ax.set_ylabel("test accuracy")
ax.set_title("Image + question, frozen encoders")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
