"""Outcome types: everything of a fit that depends on the target, one module each.

- :mod:`~sk_i2m2.outcomes.classes`: class labels (:class:`ClassesOutcome`);
- :mod:`~sk_i2m2.outcomes.labels`: multilabel targets (:class:`LabelsOutcome`);
- :mod:`~sk_i2m2.outcomes.gaussian`: regression with Gaussian experts
  (:class:`GaussianOutcome`);
- :mod:`~sk_i2m2.outcomes.cox`: time-to-event targets with Cox experts
  (:class:`CoxOutcome`).

Each implements :class:`Outcome`. Adding an outcome type is one new module
(an :class:`Outcome` subclass registered with
``@REGISTRY.register("outcome", name)``, its stage net built on
:class:`~sk_i2m2.training.net.StageNetMixin`) and an estimator class that
names it as ``_outcome_type``; nothing else in the package changes.
"""

from ._base import Outcome, PredictionHead, StageOptions
from .classes import ClassesOutcome
from .cox import CoxOutcome
from .gaussian import GaussianOutcome
from .labels import LabelsOutcome

__all__ = [
    "Outcome",
    "StageOptions",
    "PredictionHead",
    "ClassesOutcome",
    "LabelsOutcome",
    "GaussianOutcome",
    "CoxOutcome",
]
