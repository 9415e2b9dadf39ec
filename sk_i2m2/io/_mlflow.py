"""MLflow models holding the pickle-free format of :func:`sk_i2m2.save`.

``mlflow.sklearn.log_model`` stores a model with skops (its default) or
cloudpickle; skops cannot store an sk-i2m2 estimator's torch module, and
cloudpickle is a pickle. :func:`log_model` logs a pyfunc model instead:
the directory of :func:`sk_i2m2.save` as an artifact, and the serving code
as a file of this package (MLflow's "models from code"), so that neither
logging nor loading pickles anything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from importlib import metadata

import numpy as np
import pandas as pd

from .._data import ModalityDict
from ._optional import import_optional
from ._pipeline import save

__all__ = ["log_model", "to_modalities"]

ARTIFACT = "sk_i2m2_model"
_METHODS = ("predict", "predict_proba")
# Package data, not a module of the package: importing it needs MLflow and
# registers the model, which only MLflow's loader should do.
_SERVING_CODE = os.path.join(os.path.dirname(__file__), "serving", "mlflow_model.py")
# What loading and serving the model imports; pinned to this environment's versions.
_SERVING_DISTRIBUTIONS = (
    "sk-i2m2",
    "torch",
    "scikit-learn",
    "skorch",
    "skops",
    "safetensors",
    "numpy",
    "pandas",
    "mlflow",
)


def log_model(obj, name, *, predict_method="predict", **kwargs):
    """Log a fitted sk-i2m2 estimator or Pipeline as an MLflow pyfunc model.

    The model is stored with :func:`sk_i2m2.save` (skops + JSON +
    safetensors, no pickle) and served by a ``PythonModel`` that this
    package ships as code, so ``mlflow.pyfunc.load_model`` unpickles
    nothing. The loaded model's ``predict`` takes a dict of modalities
    (``{modality: array or DataFrame}``) or a pandas DataFrame whose columns
    are ``<modality>__<column>`` (one table per modality, the column names
    after ``__``) or a modality's name (one per-sample array or list per
    cell; see :func:`to_modalities`).

    Parameters
    ----------
    obj : I2M2Classifier, I2M2Regressor or Pipeline
        Fitted.
    name : str
        Name of the model in the run (``mlflow.pyfunc.log_model``'s ``name``).
    predict_method : {"predict", "predict_proba"}, default="predict"
        What the served model's ``predict`` returns.
    **kwargs
        Passed to ``mlflow.pyfunc.log_model`` (``registered_model_name``,
        ``input_example``, ``signature``, ...). Without
        ``pip_requirements``, ``extra_pip_requirements`` or ``conda_env``,
        the requirements are sk-i2m2, torch, scikit-learn, skorch, skops,
        safetensors, numpy, pandas and mlflow at the versions installed here.

    Returns
    -------
    model_info : mlflow.models.model.ModelInfo
        Its ``model_uri`` loads the model with ``mlflow.pyfunc.load_model``.

    Raises
    ------
    ImportError
        MLflow is not installed (``pip install "sk-i2m2[mlflow]"``).
    """
    if predict_method not in _METHODS:
        raise ValueError(f"predict_method must be one of {_METHODS}; got {predict_method!r}.")
    mlflow = import_optional("mlflow", "mlflow", "sk_i2m2.io.log_model")
    if not {"pip_requirements", "extra_pip_requirements", "conda_env"} & set(kwargs):
        # MLflow would otherwise infer them by loading the model in a subprocess,
        # which costs seconds and finds these same packages.
        kwargs["pip_requirements"] = _installed_requirements()
    with tempfile.TemporaryDirectory() as directory:
        model_dir = os.path.join(directory, "model")
        save(obj, model_dir)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=_SERVING_CODE,
            artifacts={ARTIFACT: model_dir},
            model_config={"predict_method": predict_method},
            **kwargs,
        )


def _installed_requirements():
    """``name==version`` of each serving distribution installed here."""
    pins = []
    for name in _SERVING_DISTRIBUTIONS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def to_modalities(model_input):
    """A :class:`~sk_i2m2.ModalityDict` from what a served model receives.

    Parameters
    ----------
    model_input : dict or pandas.DataFrame
        A dict ``{modality: array-like or DataFrame}`` (lists become
        arrays), or a DataFrame whose columns are either
        ``<modality>__<column>``, grouped into one DataFrame per modality
        with the names after ``__``, or a modality's name, whose cells hold
        one sample each (arrays or nested lists, stacked on a first axis).

    Returns
    -------
    X : ModalityDict
    """
    if isinstance(model_input, Mapping):
        return ModalityDict(
            {
                name: value if isinstance(value, (pd.DataFrame, np.ndarray)) else np.asarray(value)
                for name, value in model_input.items()
            }
        )
    if not isinstance(model_input, pd.DataFrame):
        raise TypeError(
            "A served sk-i2m2 model takes a dict of modalities or a pandas DataFrame; "
            f"got {type(model_input).__name__}."
        )
    tables, arrays = {}, {}
    for column in model_input.columns:
        modality, sep, feature = str(column).partition("__")
        if sep:
            tables.setdefault(modality, {})[feature] = model_input[column].to_numpy()
        else:
            cells = [np.asarray(cell, dtype=np.float32) for cell in model_input[column]]
            arrays[modality] = np.stack(cells) if cells else np.empty((0,), np.float32)
    clash = sorted(set(tables) & set(arrays))
    if clash:
        raise ValueError(
            f"Modality {clash[0]!r} is given both as a column of per-sample arrays and as "
            f"'{clash[0]}__<column>' columns; give it one way."
        )
    X = {m: pd.DataFrame(columns, index=model_input.index) for m, columns in tables.items()}
    return ModalityDict({**X, **arrays})
