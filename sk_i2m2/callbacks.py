"""skorch callbacks of the staged I2M2 training.

Public home of the callbacks defined in :mod:`sk_i2m2.training.callbacks`.
"""

from .training.callbacks import ExpertCheckpoint, FiniteLossCheck, StageProgressBar

__all__ = ["ExpertCheckpoint", "FiniteLossCheck", "StageProgressBar"]
