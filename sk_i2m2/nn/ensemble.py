"""Models of several cross-fitting folds, combined into one product of experts."""

from __future__ import annotations

import torch
from torch import nn

from .product import class_log_proba, gaussian_fold_mean

__all__ = ["FoldEnsemble", "MeanFoldEnsemble", "GaussianFoldEnsemble"]


class FoldEnsemble(nn.Module):
    """The I2M2 modules of K folds as one model.

    Each expert's prediction is the geometric mean of its K fold versions:
    the output, shaped like :class:`~sk_i2m2.nn.experts.I2M2Module`'s, holds
    each expert's log-probabilities averaged over the folds, so the product
    of experts (:func:`~sk_i2m2.nn.product.combine`) of the ensemble is
    still a product of one intra expert per modality and one inter expert.
    An expert that cannot see a sample has logits 0 in every fold, so its
    averaged log-probabilities are uniform and drop out of the product.

    Parameters
    ----------
    modules : list of I2M2Module
        The fold models; same experts, same classes.
    """

    def __init__(self, modules):
        super().__init__()
        self.folds = nn.ModuleList(modules)

    @property
    def expert_names(self):
        return self.folds[0].expert_names

    def availability(self, X):
        return self.folds[0].availability(X)

    def scale_outputs(self, weights):
        """Multiply each expert's logits by its weight in every fold (see ``I2M2Module``)."""
        for fold in self.folds:
            fold.scale_outputs(weights)

    def forward(self, **X):
        # The folds share their frozen encoders' weights: compute those features once.
        X = self.folds[0].encode_frozen(X)
        return torch.stack([class_log_proba(fold(**X)) for fold in self.folds]).mean(0)


class MeanFoldEnsemble(FoldEnsemble):
    """The I2M2 modules of K folds as one model whose experts average their raw outputs.

    For experts whose outputs are log-odds (one Bernoulli expert per label)
    or log-risks (Cox experts): the normalised geometric mean of Bernoulli
    distributions has the mean of their log-odds as its log-odds, and the
    geometric mean of hazards the mean of their log-risks, so the ensemble
    is still a product of one expert per modality and the inter expert. An
    abstaining expert outputs 0 in every fold.
    """

    def forward(self, **X):
        X = self.folds[0].encode_frozen(X)
        return torch.stack([fold(**X) for fold in self.folds]).mean(0)


class GaussianFoldEnsemble(FoldEnsemble):
    """The I2M2 modules of K folds of Gaussian experts (the regressor) as one model.

    Each expert's prediction is the geometric mean of its K fold versions
    (:func:`~sk_i2m2.nn.product.gaussian_fold_mean`): a Gaussian with the
    folds' mean precision and their precision-weighted mean, so the
    ensemble is still a product of Gaussian experts. An expert that cannot
    see a sample is left out of the product by its availability, as in a
    single model.
    """

    def forward(self, **X):
        return gaussian_fold_mean(torch.stack([fold(**X) for fold in self.folds]))
