"""The torch side of I2M2: encoders, experts, fusion, losses and their product.

Nothing here knows about scikit-learn: :class:`~sk_i2m2.I2M2Classifier`
builds an :class:`~sk_i2m2.nn.experts.I2M2Module` with
:func:`~sk_i2m2.nn.build.build_module` and trains it with the losses of
:mod:`sk_i2m2.nn.losses`; every prediction goes through
:func:`~sk_i2m2.nn.product.combine`.

The user-facing specifications live outside this package and build the
modules here: the encoder specs of :mod:`sk_i2m2.encoders` build the
modules of :mod:`~sk_i2m2.nn.encoder_modules` (and, for pretrained
backbones, :mod:`~sk_i2m2.nn.vision` and :mod:`~sk_i2m2.nn.frozen`); the
fusion specs of :mod:`sk_i2m2.fusion` build those of
:mod:`~sk_i2m2.nn.fusion_modules`.
"""

from .build import build_module, expert_plan
from .experts import INTER, PRESENT, SAMPLE_WEIGHT, Encoder, I2M2Module, InterExpert, IntraExpert
from .losses import ExpertsBCELoss, ExpertsNLLLoss, ProductOfExpertsBCELoss, ProductOfExpertsNLLLoss
from .product import combine, combine_labels, product_label_proba, product_proba
from .standardize import Standardize, input_moments

__all__ = [
    "INTER",
    "PRESENT",
    "SAMPLE_WEIGHT",
    "Encoder",
    "I2M2Module",
    "InterExpert",
    "IntraExpert",
    "ExpertsNLLLoss",
    "ProductOfExpertsNLLLoss",
    "ExpertsBCELoss",
    "ProductOfExpertsBCELoss",
    "Standardize",
    "build_module",
    "combine",
    "combine_labels",
    "expert_plan",
    "input_moments",
    "product_label_proba",
    "product_proba",
]
