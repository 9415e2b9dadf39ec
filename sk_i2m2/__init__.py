"""sk-i2m2: I2M2 multi-modal classification, regression and survival analysis for scikit-learn.

I2M2 (NeurIPS 2024) models a label as the normalised product of one
classifier per modality (intra-modality dependencies) and one classifier on
all modalities fused (inter-modality dependencies).
"""

from ._classifier import I2M2Classifier
from ._data import ModalityDict
from ._lazy import FileModality
from ._regressor import I2M2Regressor
from ._survival import I2M2SurvivalAnalysis
from ._version import __version__
from .io import load, save, to_onnx
from .preprocessing import PerModality

__all__ = [
    "I2M2Classifier",
    "I2M2Regressor",
    "I2M2SurvivalAnalysis",
    "ModalityDict",
    "PerModality",
    "FileModality",
    "save",
    "load",
    "to_onnx",
    "__version__",
]
