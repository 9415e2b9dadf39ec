"""Saving a fitted I2M2 estimator as JSON plus safetensors, and loading it back.

Loading reads only JSON and raw tensors: nothing is unpickled, so a model
file cannot run code. The torch module is rebuilt from the stored
configuration (encoder and fusion specs by class name and parameters)
and the weights are loaded into it.
"""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.utils.validation import check_is_fitted

from ._device import resolve_device, to_channels_last
from ._registry import REGISTRY
from ._version import __version__
from ._warnings import warn_user
from .encoders import EncoderSpec, ModuleEncoder, TextEmbedding
from .exceptions import ModelFileError
from .fusion import FusionSpec
from .nn.build import build_module_for

FORMAT = "sk-i2m2"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Fitted attributes that are not stored as configuration: the module is
# rebuilt and gets the stored weights; the training nets are not kept.
_NOT_CONFIG = ("module_", "pretrain_net_", "finetune_net_", "fold_nets_")
# With the target attributes of the estimator's outcome (e.g. ``classes_``).
_REQUIRED_FITTED = (
    "modalities_",
    "input_shapes_",
    "encoders_",
    "fusion_",
    "expert_names_",
)


class _Unstorable(TypeError):
    pass


class _CustomModule:
    """Stands in for a ModuleEncoder (or TextEmbedding) until the user passes its code again."""

    def __init__(self, description, options, spec_class=ModuleEncoder):
        self.description = description
        self.options = options
        self.spec_class = spec_class


class SaveLoadMixin:
    """``save`` and ``load`` for an estimator whose fitted state is data plus ``module_``.

    What an estimator provides: its parameters (``get_params``), its public
    fitted attributes (names ending in ``_``) as JSON-compatible data or
    specs, an outcome type (``_outcome_type``, see :mod:`sk_i2m2.outcomes`)
    that names the attributes describing its target and combines
    cross-fitted models, a torch ``module_`` that
    :func:`~sk_i2m2.nn.build.build_module_for` rebuilds from the
    estimator's ``_architecture()``, and a ``device`` parameter.
    """

    def save(self, path):
        """Save the fitted model to the directory ``path``.

        Writes ``config.json`` (parameters, fitted metadata, encoder and
        fusion specs) and ``model.safetensors`` (the weights, as CPU
        tensors): no code, so :meth:`load` unpickles nothing and a model
        trained on CUDA loads without a GPU. The stage nets are not saved;
        parameters that are not data (``callbacks``, a ``RandomState``) are
        left out with a warning; a custom torch module encoder is saved as
        its weights only (pass the module again to :meth:`load`).

        Parameters
        ----------
        path : str or os.PathLike
            Directory to write; created if needed, existing files in it
            are replaced.
        """
        save(self, path)

    @classmethod
    def load(cls, path, encoders=None, device=None):
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            Directory written by :meth:`save`.
        encoders : dict or None, default=None
            Modality -> torch module class, factory, instance or
            :class:`~sk_i2m2.encoders.ModuleEncoder`, for each modality
            that had a custom module encoder; required for those, refused
            for the others. It must have the architecture it had when saved.
        device : str, torch.device or None, default=None
            Where to put the model (this also sets the ``device``
            parameter). ``None`` uses the saved ``device`` parameter, and
            the CPU when it asks for CUDA that is not available.

        Returns
        -------
        estimator : estimator of this class
            Fitted; ``pretrain_net_`` and ``finetune_net_`` are ``None``.

        Raises
        ------
        sk_i2m2.exceptions.ModelFileError
            A file is damaged, edited or of another format (names the file).
        """
        return load(cls, path, encoders=encoders, device=device)


def save(estimator, path):
    """Write ``estimator`` to the directory ``path``; see ``SaveLoadMixin.save``."""
    check_is_fitted(estimator, "module_")
    fitted = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in _NOT_CONFIG:
            continue
        try:
            fitted[name] = _encode(value)
        except _Unstorable as exc:
            raise TypeError(f"Cannot save the fitted attribute {name}: {exc}") from None
    params, not_saved = {}, []
    for name, value in estimator.get_params(deep=False).items():
        if name == "encoders" and isinstance(value, dict):
            # A torch module given directly is stored like a ModuleEncoder.
            value = {
                m: spec if isinstance(spec, (EncoderSpec, str)) else ModuleEncoder(spec)
                for m, spec in value.items()
            }
        try:
            params[name] = _encode(value)
        except _Unstorable:
            not_saved.append(name)
    if not_saved:
        warn_user(
            f"Parameters {not_saved} cannot be stored as JSON and are not saved; "
            "the loaded estimator has their defaults (set them again with "
            "set_params before refitting it).",
        )
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sk_i2m2_version": __version__,
        "estimator": type(estimator).__name__,
        "params": params,
        "params_not_saved": not_saved,
        "fitted": fitted,
    }
    # Copies on the CPU: tensors must not share memory (the intra and inter
    # experts of a modality start from the same scaler tensors), and a model
    # trained on CUDA must load on a machine without one.
    state = {
        key: value.detach().to("cpu", copy=True).contiguous()
        for key, value in estimator.module_.state_dict().items()
    }
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    save_file(state, os.path.join(path, WEIGHTS_NAME), metadata={"format": "pt"})


def load(cls, path, encoders=None, device=None):
    """Rebuild an estimator saved by :func:`save`; see ``SaveLoadMixin.load``.

    Every problem with the files raises :class:`~sk_i2m2.exceptions.ModelFileError`
    naming the file (``FileNotFoundError`` for a missing one).
    """
    config_path = os.path.join(path, CONFIG_NAME)
    weights_path = os.path.join(path, WEIGHTS_NAME)
    for file in (config_path, weights_path):
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"{file} does not exist; pass the directory written by {cls.__name__}.save."
            )
    params, fitted = _read_config(cls, config_path)
    _check_custom_encoders(cls, params, fitted, dict(encoders or {}))
    estimator = cls(**params)
    if device is not None:
        estimator.device = device
        target = resolve_device(device)
    else:
        try:
            target = resolve_device(estimator.device)
        except ValueError:  # saved for CUDA, loaded where there is none
            target = torch.device("cpu")
    for name, value in fitted.items():
        setattr(estimator, name, value)
    module = _rebuild_module(estimator, config_path)
    try:
        state = load_file(weights_path, device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(
            f"{weights_path} is not a readable safetensors file ({exc})."
        ) from None
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(
            f"The weights in {weights_path} do not fit the model rebuilt from "
            f"{config_path} (a custom module encoder must be the same architecture "
            f"as when saved): {exc}"
        ) from None
    # The layout fit trains in, so that predictions are those of the saved model.
    to_channels_last(module)
    estimator.module_ = module.to(target).eval()
    estimator.device_ = target
    estimator.pretrain_net_ = None
    estimator.finetune_net_ = None
    estimator.fold_nets_ = None
    return estimator


def _read_config(cls, config_path):
    """Parameters and fitted attributes stored in ``config_path``."""
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{config_path} is not valid JSON ({exc}).") from None
    if (
        not isinstance(config, dict)
        or config.get("format") != FORMAT
        or config.get("format_version") != FORMAT_VERSION
    ):
        found = config if not isinstance(config, dict) else config.get("format")
        version = config.get("format_version") if isinstance(config, dict) else None
        raise ModelFileError(
            f"{config_path} is not an sk-i2m2 model of format version "
            f"{FORMAT_VERSION} (format {found!r}, version {version!r})."
        )
    saved_as = config.get("estimator")
    saved_cls = REGISTRY.class_named("estimator", str(saved_as))
    if saved_cls is not None and not (issubclass(cls, saved_cls) or issubclass(saved_cls, cls)):
        raise ModelFileError(
            f"{config_path} holds an {saved_as}; load it with {saved_as}.load, "
            f"not {cls.__name__}.load."
        )
    try:
        accepted = inspect.signature(cls).parameters
        unknown = [name for name in config["params"] if name not in accepted]
        params = {
            name: _decode(value) for name, value in config["params"].items() if name in accepted
        }
        fitted = {name: _decode(value) for name, value in config["fitted"].items()}
        # Saved before calibration and cross-fitting existed.
        fitted.setdefault("temperature_", 1.0)
        fitted.setdefault("n_folds_", 1)
        # Saved before frozen encoders ran in front of the experts.
        fitted.setdefault("frozen_modalities_", [])
        outcome = cls._outcome_type
        required = (*outcome.target_attributes, *_REQUIRED_FITTED)
        absent = [name for name in required if name not in fitted]
        if absent:
            raise KeyError(f"fitted attribute {absent[0]!r} is missing")
        # Target attributes that an older version did not save.
        fitted = {**outcome.saved_defaults, **fitted}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{config_path} is damaged: {type(exc).__name__}: {exc}.") from None
    if unknown:
        warn_user(
            f"Ignoring saved parameters {unknown}, which this version of "
            f"{cls.__name__} does not have."
        )
    return params, fitted


def _check_custom_encoders(cls, params, fitted, encoders):
    """Put the user's modules in place of the custom module encoders saved as descriptions."""
    custom = [m for m, spec in fitted["encoders_"].items() if isinstance(spec, _CustomModule)]
    missing = [m for m in custom if m not in encoders]
    if missing:
        spec = fitted["encoders_"][missing[0]]
        what, expected = (
            ("text embedding", "the same embedding callable or TextEmbedding")
            if spec.spec_class is TextEmbedding
            else ("torch module encoder", "the same module class, factory or ModuleEncoder")
        )
        raise ValueError(
            f"Modality {missing[0]!r} used a custom {what} "
            f"({spec.description}), whose code is not stored in the file. Pass it "
            f"again: {cls.__name__}.load(path, encoders={{{missing[0]!r}: <{expected}>}})."
        )
    extra = [m for m in encoders if m not in custom]
    if extra:
        raise ValueError(
            f"encoders names modality {extra[0]!r}, which did not use a custom "
            f"module encoder (modalities with one: {custom}); only those are passed "
            "to load."
        )
    for name in custom:
        given = encoders[name]
        if not isinstance(given, EncoderSpec):
            saved = fitted["encoders_"][name]
            given = saved.spec_class(given, **saved.options)
        fitted["encoders_"][name] = given
        if isinstance(params.get("encoders"), dict) and name in params["encoders"]:
            params["encoders"][name] = given


def _rebuild_module(estimator, config_path):
    """The untrained module of the saved configuration (weights are loaded next)."""
    example = {m: torch.zeros((2, *estimator.input_shapes_[m])) for m in estimator.modalities_}
    # The saved weights replace any pretrained ones: build without fetching those.
    architecture = estimator._architecture().architecture_only()
    # Building draws initial weights; keep the caller's random stream as it was.
    with torch.random.fork_rng(devices=[]):
        folds = [build_module_for(architecture, example) for _ in range(estimator.n_folds_)]
    if len(folds) == 1:
        module = folds[0]
    else:
        module = estimator._fitted_outcome().fold_ensemble(folds)
    if module.expert_names != list(estimator.expert_names_):
        raise ModelFileError(
            f"{config_path}: the rebuilt model has experts {module.expert_names}, but "
            f"the saved one has {estimator.expert_names_}."
        )
    return module


def _encode(value):
    """JSON-compatible form of ``value``; tagged objects for non-JSON types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUO":
            raise _Unstorable(f"arrays of dtype {value.dtype} are not stored")
        return {"__array__": [_encode(v) for v in value.tolist()], "dtype": value.dtype.str}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, TextEmbedding):
        entry = {"description": _describe_code(value.embed), "options": {}}
        if value.encoder is not None:
            entry["options"]["encoder"] = _encode(value.encoder)
        return {"__text_embedding__": entry}
    if isinstance(value, ModuleEncoder):
        module = value.module
        kind = type(module) if isinstance(module, torch.nn.Module) else module
        description = _describe_code(kind)
        options = {"trainable": value.trainable, "standardize": value.standardize}
        try:
            options["module_kwargs"] = _encode(value.module_kwargs)
        except _Unstorable:
            pass
        return {"__module_encoder__": {"description": description, "options": options}}
    if isinstance(value, (EncoderSpec, FusionSpec)):
        name = type(value).__name__
        if REGISTRY.spec_class(name) is not type(value):
            raise _Unstorable(
                f"{name} is not a built-in encoder or fusion spec, so it cannot be "
                "rebuilt from JSON"
            )
        return {"__spec__": name, "params": _encode(value.get_params(deep=False))}
    if (
        inspect.isclass(value)
        and issubclass(value, torch.optim.Optimizer)
        and getattr(torch.optim, value.__name__, None) is value
    ):
        return {"__torch_optim__": value.__name__}
    if isinstance(value, torch.nn.Module) or callable(value):
        raise _Unstorable(f"{value!r} is code, not data")
    raise _Unstorable(f"values of type {type(value).__name__} are not stored")


def _describe_code(code):
    """``module.qualname`` of a class or function (of an instance's class)."""
    kind = code if inspect.isclass(code) or inspect.isroutine(code) else type(code)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', kind)}"


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if not any(k.startswith("__") for k in value):
        return {k: _decode(v) for k, v in value.items()}
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k): _decode(v) for k, v in value["__items__"]}
    if "__array__" in value:
        dtype, items = np.dtype(value["dtype"]), _decode(value["__array__"])
        if dtype.kind != "O":
            return np.array(items, dtype=dtype)
        # Element by element: tuples (e.g. MultiIndex column names) stay elements.
        array = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            array[i] = item
        return array
    if "__device__" in value:
        return torch.device(value["__device__"])
    if "__module_encoder__" in value:
        entry = value["__module_encoder__"]
        return _CustomModule(entry["description"], _decode(entry["options"]))
    if "__text_embedding__" in value:
        entry = value["__text_embedding__"]
        return _CustomModule(entry["description"], _decode(entry["options"]), TextEmbedding)
    if "__spec__" in value:
        spec = REGISTRY.spec_class(value["__spec__"])
        if spec is None:
            raise ValueError(f"Unknown encoder or fusion spec {value['__spec__']!r}.")
        # A file saved before a parameter existed gets the value that rebuilds its model.
        return spec(**{**getattr(spec, "saved_before", {}), **_decode(value["params"])})
    if "__torch_optim__" in value:
        optimizer = getattr(torch.optim, value["__torch_optim__"], None)
        if not (inspect.isclass(optimizer) and issubclass(optimizer, torch.optim.Optimizer)):
            raise ValueError(f"Unknown torch optimizer {value['__torch_optim__']!r}.")
        return optimizer
    raise ValueError(f"Unknown entry in the model configuration: {sorted(value)}.")
