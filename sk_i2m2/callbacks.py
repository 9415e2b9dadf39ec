"""skorch callbacks of the staged I2M2 training.

Public home of the callbacks defined in :mod:`sk_i2m2.training.callbacks`
and :mod:`sk_i2m2.training.schedule`.
"""

from .training.callbacks import Converged, ExpertCheckpoint, FiniteLossCheck, StageProgressBar
from .training.schedule import LargeBatchLR

__all__ = ["Converged", "ExpertCheckpoint", "FiniteLossCheck", "LargeBatchLR", "StageProgressBar"]
