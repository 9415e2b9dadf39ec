"""Encoder specifications: small objects with hyperparameters that build torch modules.

An encoder maps a batch of one modality, shape ``(batch, *sample_shape)``, to
features of shape ``(batch, out_features)``. Specs are scikit-learn style
objects (``get_params``/``set_params``), so an :class:`~sk_i2m2.I2M2Classifier`
exposes them as ``encoders__<modality>__<param>`` for ``GridSearchCV``.

The specs are defined in two private modules, the ones trained from scratch
(``_encoder_specs``) and the ones around models trained elsewhere
(``_pretrained_encoders``); this module is their public home and turns a
user's ``encoders`` parameter into specs. The torch modules they build live
in :mod:`sk_i2m2.nn.encoder_modules`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping

from torch import nn

from ._encoder_specs import (
    Conv2dEncoder,
    Conv3dEncoder,
    EncoderSpec,
    GRUEncoder,
    MLPEncoder,
    ModuleEncoder,
)
from ._pretrained_encoders import TextEmbedding, TorchvisionEncoder
from ._registry import REGISTRY

__all__ = [
    "EncoderSpec",
    "MLPEncoder",
    "Conv2dEncoder",
    "Conv3dEncoder",
    "GRUEncoder",
    "ModuleEncoder",
    "TextEmbedding",
    "TorchvisionEncoder",
    "infer_encoder_kind",
]


def infer_encoder_kind(sample_shape):
    """Name of the default encoder for samples of ``sample_shape``.

    ``(d,)`` -> ``"mlp"``; ``(C, H, W)`` -> ``"conv2d"``;
    ``(C, D, H, W)`` -> ``"conv3d"``. A 3-D array ``(n, A, B)`` is either a
    grayscale image or a sequence ``(n, T, F)``: it is taken as an image
    when both sides are at least 8 and neither is more than twice the other,
    otherwise as a sequence. Pass ``encoders={name: "gru"}`` (or
    ``"conv2d"``) to override.
    """
    ndim = len(sample_shape)
    if ndim == 1:
        return "mlp"
    if ndim == 2:
        a, b = sample_shape
        is_image = min(a, b) >= 8 and max(a, b) <= 2 * min(a, b)
        return "conv2d" if is_image else "gru"
    if ndim == 3:
        return "conv2d"
    if ndim == 4:
        return "conv3d"
    return None


def resolve_encoder(modality, spec, sample_shape):
    """Turn a user's encoder entry (or ``None``) into an :class:`EncoderSpec`."""
    if spec is None:
        kind = infer_encoder_kind(sample_shape)
        if kind is None:
            raise ValueError(
                f"Modality {modality!r} has samples of shape {tuple(sample_shape)} "
                f"({len(sample_shape) + 1}-D input); no default encoder takes it. "
                "Supported: vectors (n, d), images (n, H, W) or (n, C, H, W), "
                "volumes (n, C, D, H, W), sequences (n, T, F); or pass a "
                "torch.nn.Module via encoders."
            )
        spec = REGISTRY.create("encoder", kind)
    elif isinstance(spec, str):
        name, spec = spec, REGISTRY.create("encoder", spec)
        if spec is None:
            raise ValueError(
                f"Unknown encoder {name!r} for modality {modality!r}; "
                f"expected one of {REGISTRY.names('encoder')} or an encoder object."
            )
    elif isinstance(spec, TextEmbedding):
        # The embedding model is shared, not copied (it may be large, and it is never trained).
        spec = TextEmbedding(spec.embed, copy.deepcopy(spec.encoder))
    elif isinstance(spec, EncoderSpec):
        spec = copy.deepcopy(spec)
    elif (
        isinstance(spec, nn.Module)
        or (inspect.isclass(spec) and issubclass(spec, nn.Module))
        or callable(spec)
    ):
        spec = ModuleEncoder(spec)
    else:
        raise TypeError(
            f"encoders[{modality!r}] must be an encoder spec (e.g. MLPEncoder()), one "
            f"of {REGISTRY.names('encoder')}, or a torch.nn.Module class, factory or instance; "
            f"got {type(spec).__name__}."
        )
    spec.check_sample_shape(modality, sample_shape)
    return spec


def nested_encoder_params(encoders):
    """``encoders__<modality>[__<param>]`` entries of an estimator's ``get_params(deep=True)``."""
    params = {}
    if not isinstance(encoders, Mapping):  # left for fit's parameter validation
        return params
    for name, spec in encoders.items():
        params[f"encoders__{name}"] = spec
        if isinstance(spec, EncoderSpec):
            for key, value in spec.get_params(deep=True).items():
                params[f"encoders__{name}__{key}"] = value
    return params


def set_nested_encoder_params(encoders, nested):
    """A new ``encoders`` dict with ``nested`` (``encoders__...`` keys) applied.

    ``encoders__<modality>`` replaces an entry; ``encoders__<modality>__<param>``
    sets a parameter of a copy of its spec (a kind name such as ``"mlp"``
    becomes its default spec first).
    """
    encoders = dict(encoders or {})
    for key in sorted(nested, key=lambda k: k.count("__")):
        name, _, sub = key[len("encoders__") :].partition("__")
        if not sub:
            encoders[name] = nested[key]
            continue
        spec = encoders.get(name)
        if isinstance(spec, str):
            spec = REGISTRY.create("encoder", spec) or spec
        if not isinstance(spec, EncoderSpec):
            raise ValueError(
                f"Cannot set {key!r}: encoders has no encoder spec for modality "
                f"{name!r}. Pass encoders={{{name!r}: MLPEncoder()}} (or the "
                "spec of its kind) to tune its hyperparameters."
            )
        encoders[name] = copy.deepcopy(spec).set_params(**{sub: nested[key]})
    return encoders


def resolve_encoders(given, sample_shapes, small_cohort=False):
    """Spec of every modality: the user's entry, or the default for its shape.

    ``given`` is the estimator's ``encoders`` parameter; ``sample_shapes``
    maps each modality of ``X`` to its per-sample shape. With
    ``small_cohort``, a vector modality without an entry gets a linear
    expert (``MLPEncoder(hidden_sizes=())``: the classifier head reads the
    standardised features), which overfits less than an MLP on tens to
    hundreds of samples.
    """
    given = dict(given or {})
    unknown = [name for name in given if name not in sample_shapes]
    if unknown:
        raise ValueError(
            f"encoders names modality {unknown[0]!r}, which is not in X "
            f"(X has {sorted(sample_shapes)})."
        )
    specs = {}
    for name, shape in sample_shapes.items():
        if name not in given and small_cohort and infer_encoder_kind(tuple(shape)) == "mlp":
            specs[name] = MLPEncoder(hidden_sizes=())
        else:
            specs[name] = resolve_encoder(name, given.get(name), tuple(shape))
    return specs
