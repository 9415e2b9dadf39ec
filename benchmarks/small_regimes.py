"""Prototype fitting regimes for small cohorts, built on the public API only.

Each regime is a function ``fit(X_train, y_train, seed) -> predict`` where
``predict(X) -> (n_samples, n_classes)`` probabilities in ``np.unique(y_train)``
order. They exist to measure how epochs and capacity should be chosen when
``I2M2Classifier`` is fitted on 50-600 samples (see ``small_cohorts.py``);
the estimator itself is unchanged by them.

Building blocks
---------------
- :class:`HeldOutStopping`: a skorch callback that scores the stage's model
  on a given held-out fold each epoch (each expert on its own in stage 1,
  the product in stage 2), keeps the best weights, stops after ``patience``
  epochs without improvement and records the best epoch(s). With
  ``I2M2Classifier(early_stopping=False)`` this turns one fit into one fold
  of an inner K-fold cross-validation.
- :class:`EpochSnapshot`: keeps each expert's weights at a chosen epoch of
  stage 1 (a refit on all rows with per-expert epoch counts).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold
from skorch.callbacks import Callback

from sk_i2m2 import I2M2Classifier
from sk_i2m2.encoders import MLPEncoder
from sk_i2m2.fusion import ConcatFusion
from sk_i2m2.nn.product import combine

__all__ = ["HeldOutStopping", "EpochSnapshot", "auto_batch_size"]


def auto_batch_size(n_train):
    """The estimator's ``batch_size="auto"``: ``n_train // 16`` clipped to [16, 256]."""
    return int(min(256, max(16, n_train // 16)))


def _tensors(X):
    return {m: torch.as_tensor(np.asarray(x, dtype=np.float32)) for m, x in X.items()}


class HeldOutStopping(Callback):
    """Early stopping on a given held-out fold.

    Parameters
    ----------
    X_valid, y_valid : dict of arrays, array of class indices
        The held-out fold (``y_valid`` already encoded as 0..C-1).
    mode : {"experts", "product"}
        ``"experts"`` (stage 1): each expert's own NLL, best weights kept
        per expert; ``"product"`` (stage 2): NLL of the product of experts,
        evaluated before the first epoch too (epoch 0 = no fine-tuning).
    patience : int
        Epochs without improvement (of any expert) before stopping.
    """

    def __init__(self, X_valid, y_valid, mode="experts", patience=10, threshold=1e-4):
        self.X_valid = X_valid
        self.y_valid = y_valid
        self.mode = mode
        self.patience = patience
        self.threshold = threshold

    def _losses(self, module):
        was_training = module.training
        module.eval()
        with torch.no_grad():
            logits = module(**_tensors(self.X_valid))
        module.train(was_training)
        y = torch.as_tensor(self.y_valid, dtype=torch.long)
        if self.mode == "experts":
            return {
                name: float(F.cross_entropy(logits[i], y))
                for i, name in enumerate(module.expert_names)
            }
        return {"product": float(F.nll_loss(combine(logits), y))}

    def _submodule(self, module, name):
        return module if name == "product" else module.experts[name]

    def on_train_begin(self, net, **kwargs):
        self.stopped_early_ = False
        self.best_epoch_, self.best_loss_, self._state = {}, {}, {}
        self.curves_ = {}
        if self.mode == "product":
            self._update(net, 0)
        else:
            for name in net.module_.expert_names:
                self.best_epoch_[name], self.best_loss_[name] = 0, math.inf

    def _update(self, net, epoch):
        for name, loss in self._losses(net.module_).items():
            self.curves_.setdefault(name, []).append(loss)
            if loss < self.best_loss_.get(name, math.inf) * (1 - self.threshold):
                self.best_loss_[name], self.best_epoch_[name] = loss, epoch
                self._state[name] = copy.deepcopy(self._submodule(net.module_, name).state_dict())

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        self._update(net, epoch)
        if epoch - max(self.best_epoch_.values()) >= self.patience:
            self.stopped_early_ = True  # tells the estimator this was not a user interrupt
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        for name, state in self._state.items():
            self._submodule(net.module_, name).load_state_dict(state)


class EpochSnapshot(Callback):
    """Keep each expert's weights at its own epoch of stage 1 (0: after the last)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_begin(self, net, **kwargs):
        self._state = {}

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        for name, target in self.epochs.items():
            if epoch == target:
                self._state[name] = copy.deepcopy(net.module_.experts[name].state_dict())

    def on_train_end(self, net, **kwargs):
        for name, state in self._state.items():
            net.module_.experts[name].load_state_dict(state)


def _encode(y):
    classes, y_index = np.unique(y, return_inverse=True)
    return classes, y_index


def _subset(X, rows):
    return {m: np.asarray(x)[rows] for m, x in X.items()}


CAPACITY = {
    # vector-view encoder widths, fusion hidden size
    "small": ((16,), 16),
    "linear": ((), 16),
}


def capacity_params(X, capacity="small"):
    """Capacity for small data: narrow (or no) hidden layers for vector views, narrow fusion."""
    hidden, fusion_hidden = CAPACITY[capacity]
    encoders = {
        m: MLPEncoder(hidden_sizes=hidden, dropout=0.1)
        for m, x in X.items()
        if np.asarray(x).ndim == 2
    }
    return {"encoders": encoders or None, "fusion": ConcatFusion(hidden_size=fusion_hidden)}


def _log_proba_experts(clf, X):
    """Each expert's log-probabilities, stacked ``(n_experts, n, C)``."""
    proba = clf.expert_proba(X)
    return np.stack([np.log(np.clip(proba[name], 1e-12, None)) for name in clf.expert_names_])


def _product(log_experts):
    return combine(torch.as_tensor(log_experts)).exp().numpy()


def inner_cv(X, y, seed, params, *, n_folds=5, patience=10, max_epochs=100):
    """Fit one model per inner fold, each early-stopped on its own held-out fold.

    Returns ``(models, stage1_epochs, stage2_epochs)``: the fold models, per
    fold a dict expert -> best stage-1 epoch, and per fold the best stage-2
    epoch (0 = fine-tuning did not help on that fold).
    """
    _, y_index = _encode(y)
    n_folds = min(n_folds, int(np.bincount(y_index).min()))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    batch_size = params.pop("batch_size", auto_batch_size(len(y)))
    models, epochs1, epochs2 = [], [], []
    for k, (train, valid) in enumerate(folds.split(np.zeros(len(y)), y_index)):
        X_valid, y_valid = _subset(X, valid), y_index[valid]
        clf = I2M2Classifier(
            random_state=seed * 100 + k,
            early_stopping=False,
            max_epochs=max_epochs,
            batch_size=batch_size,
            **params,
            callbacks={
                "pretrain": [("held_out", HeldOutStopping(X_valid, y_valid, "experts", patience))],
                "finetune": [("held_out", HeldOutStopping(X_valid, y_valid, "product", patience))],
            },
        ).fit(_subset(X, train), y_index[train])
        models.append(clf)
        epochs1.append(dict(clf.pretrain_net_.callbacks_)["held_out"].best_epoch_)
        if clf.finetune_net_ is not None:
            epochs2.append(dict(clf.finetune_net_.callbacks_)["held_out"].best_epoch_["product"])
    return models, epochs1, epochs2


def refit(X, y, seed, params, epochs1, epochs2, *, batch_size=None):
    """Refit on all rows, no holdout: each expert for the median of its fold epochs."""
    target = {
        name: max(1, int(round(np.median([e[name] for e in epochs1])))) for name in epochs1[0]
    }
    finetune = int(round(np.median(epochs2))) if epochs2 else 0
    batch_size = batch_size or auto_batch_size(len(y))
    return I2M2Classifier(
        random_state=seed,
        early_stopping=False,
        max_epochs=max(target.values()),
        finetune_epochs=finetune,
        batch_size=batch_size,
        **params,
        callbacks={"pretrain": [("snapshot", EpochSnapshot(target))]},
    ).fit(X, y)


# ----------------------------------------------------------------------
# Regimes: function(X, y, seed, **I2M2Classifier params) -> {variant: predict_proba}
# or {variant: (predict_proba, fit_seconds, info)}.


def regime_defaults(X, y, seed, **params):
    """One ``I2M2Classifier`` with its own 15 % validation split (today's fitting)."""
    clf = I2M2Classifier(random_state=seed, **params).fit(X, y)
    return {"": clf.predict_proba}


def regime_cv(X, y, seed, max_epochs=100, n_folds=5, **params):
    """Inner K-fold CV of the epochs; two variants from the same fold fits.

    - ``"cv"``: refit on all rows, no holdout: each expert trained for the
      median over folds of its best stage-1 epoch, stage 2 for the median
      best stage-2 epoch (0 skips it);
    - ``"bag"``: the K fold models, each early-stopped on its own held-out
      fold; each expert's log-probabilities averaged over the folds (a
      geometric mean, so the result is still a product of experts), then
      combined.
    """
    import time

    start = time.perf_counter()
    models, epochs1, epochs2 = inner_cv(
        X, y, seed, dict(params), n_folds=n_folds, max_epochs=max_epochs
    )
    fold_seconds = time.perf_counter() - start

    def bag(X_new):
        log_experts = np.mean([_log_proba_experts(m, X_new) for m in models], axis=0)
        return _product(log_experts)

    final = refit(X, y, seed, dict(params), epochs1, epochs2)
    refit_seconds = time.perf_counter() - start - fold_seconds
    info = {"epochs1": epochs1, "epochs2": epochs2}
    return {
        "cv": (final.predict_proba, fold_seconds + refit_seconds, info),
        "bag": (bag, fold_seconds, info),
    }
