"""Saving, exporting and serving fitted models without pickle.

- :func:`save` / :func:`load`: an sk-i2m2 estimator, or a scikit-learn
  ``Pipeline`` ending in one, as one directory (skops for the scikit-learn
  steps, JSON + safetensors for the I2M2 step);
- :func:`to_onnx`: the fitted product of experts as an ONNX graph, to run
  with onnxruntime where torch is not installed;
- :func:`log_model`: an MLflow model (a pyfunc flavor) holding the same
  pickle-free directory.
"""

from ._mlflow import log_model, to_modalities
from ._onnx import to_onnx
from ._pipeline import TRUSTED_TYPES, load, save

__all__ = ["save", "load", "to_onnx", "log_model", "to_modalities", "TRUSTED_TYPES"]
