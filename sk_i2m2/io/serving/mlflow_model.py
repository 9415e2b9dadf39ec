"""The MLflow ``PythonModel`` of :func:`sk_i2m2.io.log_model` (MLflow's "models from code").

MLflow copies this file into the logged model and runs it at load time in
place of unpickling a model object. It is package data (its folder has no
``__init__``), never imported by the package.
"""

import mlflow
from mlflow.pyfunc import PythonModel

from sk_i2m2.io import load
from sk_i2m2.io._mlflow import ARTIFACT, to_modalities


class I2M2PythonModel(PythonModel):
    """Serves the directory of :func:`sk_i2m2.save` logged as an artifact."""

    def load_context(self, context):
        self.model = load(context.artifacts[ARTIFACT])
        self.method = (context.model_config or {}).get("predict_method", "predict")

    def predict(self, context, model_input, params=None):
        return getattr(self.model, self.method)(to_modalities(model_input))


mlflow.models.set_model(I2M2PythonModel())
