"""``save`` and ``load`` of a fitted estimator or Pipeline, without pickle.

A directory holds the scikit-learn part in skops' format (``pipeline.skops``,
a zip of JSON and numpy arrays) and each sk-i2m2 step in the estimator's own
format (``config.json`` + ``model.safetensors``, see
:mod:`sk_i2m2._persistence`). skops rebuilds objects of the types its file
names; :func:`load` lets it rebuild only the types skops trusts by default
(scikit-learn, numpy, scipy, builtins), those listed in
:data:`TRUSTED_TYPES` and those the caller adds, and refuses a file naming
any other.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

from sklearn.pipeline import Pipeline

from .._persistence import CONFIG_NAME, SaveLoadMixin
from .._registry import REGISTRY
from ..exceptions import ModelFileError
from ._optional import import_optional

__all__ = ["TRUSTED_TYPES", "save", "load"]

MANIFEST_NAME = "sk-i2m2-pipeline.json"
SKOPS_NAME = "pipeline.skops"
PIPELINE_FORMAT = "sk-i2m2-pipeline"
PIPELINE_FORMAT_VERSION = 1

#: Types of sk-i2m2 that :func:`load` lets skops rebuild, beyond skops' defaults.
TRUSTED_TYPES = (
    "sk_i2m2.preprocessing.PerModality",
    "sk_i2m2._data.ModalityDict",
)


def save(obj, path):
    """Save a fitted sk-i2m2 estimator or Pipeline to the directory ``path``.

    Nothing is pickled: the scikit-learn steps of a Pipeline (scalers,
    ``ColumnTransformer``, :class:`~sk_i2m2.PerModality`, ...) go to
    ``pipeline.skops`` through skops, each sk-i2m2 step to a directory of
    its own in the estimator's JSON + safetensors format (see
    :meth:`I2M2Classifier.save <sk_i2m2.I2M2Classifier.save>`). A bare
    estimator is written exactly as its ``save`` method writes it.

    Parameters
    ----------
    obj : I2M2Classifier, I2M2Regressor or Pipeline
        Fitted. A Pipeline's sk-i2m2 estimators must be its own steps (for
        a search, save its ``best_estimator_``).
    path : str or os.PathLike
        Directory to write; created if needed. Files of an earlier save in
        it are replaced.

    Raises
    ------
    ImportError
        A Pipeline is saved and skops is not installed
        (``pip install "sk-i2m2[deploy]"``).
    TypeError
        ``obj`` is neither, or a step cannot be stored by skops.

    See Also
    --------
    load : Read the directory back.
    """
    if isinstance(obj, SaveLoadMixin):
        obj.save(path)
        # A Pipeline saved here before would be what load reads.
        stale = os.path.join(path, MANIFEST_NAME)
        if os.path.isfile(stale):
            os.remove(stale)
        return
    if not isinstance(obj, Pipeline):
        hint = " For a search, save its best_estimator_." if hasattr(obj, "best_estimator_") else ""
        raise TypeError(
            f"sk_i2m2.save takes an sk-i2m2 estimator or a scikit-learn Pipeline; "
            f"got {type(obj).__name__}.{hint}"
        )
    sio = import_optional("skops.io", "deploy", "sk_i2m2.save of a Pipeline")
    steps, rest = [], copy.copy(obj)
    rest.steps = list(obj.steps)
    for index, (name, step) in enumerate(obj.steps):
        if isinstance(step, SaveLoadMixin):
            directory = f"step-{index}"
            steps.append({"index": index, "name": name, "directory": directory})
            # The skops file keeps the step's place; the estimator goes to its own files.
            rest.steps[index] = (name, "passthrough")
    nested = [
        name
        for name, value in rest.get_params(deep=True).items()
        if isinstance(value, SaveLoadMixin)
    ]
    if nested:
        raise TypeError(
            f"The Pipeline holds an sk-i2m2 estimator inside one of its steps ({nested[0]}); "
            "sk_i2m2.save stores sk-i2m2 estimators that are steps of the Pipeline itself."
        )
    os.makedirs(path, exist_ok=True)
    try:
        data = sio.dumps(rest)
    except Exception as exc:  # skops raises what the failing object raises
        raise TypeError(
            f"The Pipeline's scikit-learn steps cannot be stored by skops ({exc}). "
            "sk_i2m2.save stores scikit-learn transformers, PerModality and sk-i2m2 "
            "estimators that are steps of the Pipeline itself."
        ) from exc
    for entry in steps:
        target = os.path.join(path, entry["directory"])
        if os.path.isdir(target):
            shutil.rmtree(target)
        obj.steps[entry["index"]][1].save(target)
    with open(os.path.join(path, SKOPS_NAME), "wb") as f:
        f.write(data)
    manifest = {
        "format": PIPELINE_FORMAT,
        "format_version": PIPELINE_FORMAT_VERSION,
        "skops": SKOPS_NAME,
        "estimators": steps,
    }
    with open(os.path.join(path, MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)


def load(path, *, device=None, trusted=None, encoders=None):
    """Load what :func:`save` (or an estimator's ``save``) wrote to ``path``.

    Nothing is unpickled. skops rebuilds the scikit-learn steps, and only
    from types skops trusts by default (scikit-learn, numpy, scipy, plain
    Python containers), :data:`TRUSTED_TYPES` and ``trusted``: a file that
    names any other type is refused before anything is built.

    Parameters
    ----------
    path : str or os.PathLike
        Directory written by :func:`save`.
    device : str, torch.device or None, default=None
        Where the sk-i2m2 estimators run (``"cpu"`` for a model trained on
        a GPU); ``None``: their saved ``device``, or the CPU where that
        asks for CUDA and there is none.
    trusted : list of str or None, default=None
        More type names (``"module.QualifiedName"``) to let skops rebuild,
        e.g. a transformer of your own in the Pipeline. Trust only the
        types of code you have installed yourself.
    encoders : dict or None, default=None
        Custom torch module encoders, passed to the estimators' ``load``
        (see :meth:`I2M2Classifier.load <sk_i2m2.I2M2Classifier.load>`).

    Returns
    -------
    obj : estimator or Pipeline
        Fitted, as saved.

    Raises
    ------
    sk_i2m2.exceptions.ModelFileError
        The directory holds no model of these formats, a file is damaged,
        or the skops file names a type that is not trusted (the message
        names it).
    ImportError
        The directory holds a Pipeline and skops is not installed.
    """
    path = os.fspath(path)
    manifest_path = os.path.join(path, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        return _load_estimator(path, device=device, encoders=encoders)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        if (
            manifest["format"] != PIPELINE_FORMAT
            or manifest["format_version"] != PIPELINE_FORMAT_VERSION
        ):
            raise ValueError(
                f"format {manifest['format']!r} version {manifest['format_version']!r}"
            )
        skops_path = os.path.join(path, os.path.basename(manifest["skops"]))
        steps = [
            (int(e["index"]), os.path.basename(e["directory"])) for e in manifest["estimators"]
        ]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{manifest_path} is not an sk-i2m2 pipeline manifest of format version "
            f"{PIPELINE_FORMAT_VERSION} ({type(exc).__name__}: {exc})."
        ) from None
    sio = import_optional("skops.io", "deploy", "sk_i2m2.load of a Pipeline")
    allowed = set(TRUSTED_TYPES) | set(trusted or ())
    try:
        found = sio.get_untrusted_types(file=skops_path)
    except FileNotFoundError:  # as for an estimator's missing file
        raise
    except Exception as exc:  # a damaged zip or schema
        raise ModelFileError(f"{skops_path} is not a readable skops file ({exc}).") from None
    refused = [name for name in found if name not in allowed]
    if refused:
        raise ModelFileError(
            f"{skops_path} names types that are not trusted: {refused}. sk_i2m2.load "
            f"rebuilds only scikit-learn, numpy and scipy types and {list(TRUSTED_TYPES)}; "
            "if you wrote this file and know these types, pass them as "
            "sk_i2m2.load(path, trusted=[...])."
        )
    pipeline = sio.load(skops_path, trusted=found)
    if not isinstance(pipeline, Pipeline):
        raise ModelFileError(f"{skops_path} holds a {type(pipeline).__name__}, not a Pipeline.")
    if any(not 0 <= index < len(pipeline.steps) for index, _ in steps):
        raise ModelFileError(
            f"{manifest_path} places an estimator outside the {len(pipeline.steps)} steps "
            f"of the Pipeline in {skops_path}."
        )
    for index, directory in steps:
        name, _ = pipeline.steps[index]
        estimator = _load_estimator(os.path.join(path, directory), device=device, encoders=encoders)
        pipeline.steps[index] = (name, estimator)
    return pipeline


def _load_estimator(path, *, device, encoders):
    """An sk-i2m2 estimator from its ``config.json``, of the class the file names."""
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{path} holds neither {MANIFEST_NAME} nor {CONFIG_NAME}; pass a directory "
            "written by sk_i2m2.save or an estimator's save."
        )
    try:
        with open(config_path, encoding="utf-8") as f:
            name = json.load(f).get("estimator")
    except (UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{config_path} is not an sk-i2m2 model ({exc}).") from None
    # Only the registered estimator classes of the family, looked up by name.
    cls = REGISTRY.class_named("estimator", str(name))
    if cls is None:
        raise ModelFileError(f"{config_path} names {name!r}, which is not an sk-i2m2 estimator.")
    return cls.load(path, encoders=encoders, device=device)
