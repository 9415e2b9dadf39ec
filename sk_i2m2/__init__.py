"""sk-i2m2: I2M2 multi-modal classification for scikit-learn.

I2M2 (NeurIPS 2024) models a label as the normalised product of one
classifier per modality (intra-modality dependencies) and one classifier on
all modalities fused (inter-modality dependencies).
"""

from ._data import ModalityDict
from ._estimator import I2M2Classifier
from ._lazy import FileModality
from ._version import __version__
from .preprocessing import PerModality

__all__ = ["FileModality", "I2M2Classifier", "ModalityDict", "PerModality", "__version__"]
