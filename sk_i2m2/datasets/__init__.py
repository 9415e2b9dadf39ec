"""Bundled and generated multi-modal data sets (no network access)."""

from ._kspace import load_kspace_digits
from ._mfeat import MFEAT_VIEWS, load_mfeat
from ._survival import make_survival_digits
from ._synthetic import make_multimodal_classification, make_multimodal_regression

__all__ = [
    "MFEAT_VIEWS",
    "load_kspace_digits",
    "load_mfeat",
    "make_multimodal_classification",
    "make_multimodal_regression",
    "make_survival_digits",
]
