"""Encoder specs around models trained elsewhere: torchvision backbones, text embeddings.

Their models come from outside the package (torchvision's weights, a
user's embedding callable) and usually do not train. The public names live
in :mod:`sk_i2m2.encoders`.
"""

from __future__ import annotations

import functools
import numbers
import os

import numpy as np
import pandas as pd

from ._encoder_specs import EncoderSpec, MLPEncoder
from ._registry import REGISTRY
from .nn.encoder_modules import Flatten
from .nn.frozen import FrozenModule
from .nn.vision import BackboneAdapter, remove_head, set_trainable

__all__ = ["TextEmbedding", "TorchvisionEncoder", "BACKBONES"]


@REGISTRY.register("encoder")
class TextEmbedding(EncoderSpec):
    """Texts embedded by a frozen callable, then a trainable vector encoder.

    A modality given as a sequence of strings (a list, a numpy object array
    or a pandas Series) is turned into vectors by ``embed`` when it is
    validated: once per ``fit`` over all rows and once per prediction, so
    the embedding model never runs per batch or per epoch, and the intra
    and inter experts share its output. The experts then read the
    embeddings through ``encoder`` (a linear expert by default), after
    standardisation (with ``standardize=True``). A missing text (``None``
    or NaN) makes the sample miss the modality.

    Parameters
    ----------
    embed : callable
        Maps a list of ``n`` strings to an array-like of shape
        ``(n, n_features)``, e.g. a sentence-transformers model's
        ``encode`` or a fitted scikit-learn vectoriser's ``transform``. It
        is not trained (and not pickled into saved models: pass it again to
        :meth:`~sk_i2m2.I2M2Classifier.load`).
    encoder : EncoderSpec or None, default=None
        Encoder of the embeddings; ``None`` means
        ``MLPEncoder(hidden_sizes=())``, the embeddings straight into each
        expert's classifier head (and the inter expert's fusion).
    """

    sample_ndims = (1,)

    def __init__(self, embed, encoder=None):
        self.embed = embed
        self.encoder = encoder

    def _encoder(self):
        return self.encoder if self.encoder is not None else MLPEncoder(hidden_sizes=())

    def feature_axes(self, sample_shape):
        return (0,)

    def build(self, sample_shape):
        return self._encoder().build(sample_shape)

    def build_inter(self, sample_shape, fusion):
        return self._encoder().build_inter(sample_shape, fusion)

    def embed_texts(self, modality, texts):
        """Embeddings ``(n, n_features)`` of ``texts``, NaN rows for missing texts."""
        if not callable(self.embed):
            raise TypeError(
                f"TextEmbedding.embed of modality {modality!r} must be a callable mapping "
                f"a list of strings to an array; got {type(self.embed).__name__}."
            )
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise TypeError(
                f"Modality {modality!r} takes a sequence of strings (a list, a numpy "
                f"object array or a pandas Series); got {type(texts).__name__}."
            )
        texts = texts.tolist() if hasattr(texts, "tolist") else list(texts)
        missing = np.array(
            [not isinstance(t, str) and np.ndim(t) == 0 and bool(pd.isna(t)) for t in texts],
            dtype=bool,
        )
        given = [t for t, m in zip(texts, missing) if not m]
        wrong = [t for t in given if not isinstance(t, str)]
        if wrong:
            raise TypeError(
                f"Modality {modality!r} has a TextEmbedding encoder, so it takes strings "
                f"(None or NaN for a missing text); got {type(wrong[0]).__name__} "
                f"{wrong[0]!r}."
            )
        if not given:
            raise ValueError(f"Modality {modality!r} has no text (every entry is missing).")
        vectors = self.embed(given)
        if hasattr(vectors, "toarray"):  # a scipy sparse matrix
            vectors = vectors.toarray()
        vectors = np.asarray(
            vectors.detach().cpu() if hasattr(vectors, "detach") else vectors, dtype=np.float32
        )
        if vectors.ndim != 2 or len(vectors) != len(given):
            raise ValueError(
                f"TextEmbedding.embed of modality {modality!r} must return an array of "
                f"shape (n_texts, n_features); it returned shape {vectors.shape} for "
                f"{len(given)} texts."
            )
        out = np.full((len(texts), vectors.shape[1]), np.nan, dtype=np.float32)
        out[~missing] = vectors
        return out


# Backbones reachable by name (``encoders={"xray": "resnet18"}``): name -> sample ndim.
# Any other torchvision classification or video model works through TorchvisionEncoder.
BACKBONES = {
    "resnet18": 2,
    "resnet50": 2,
    "densenet121": 2,
    "efficientnet_b0": 2,
    "mobilenet_v3_small": 2,
    "convnext_tiny": 2,
    "vit_b_16": 2,
    "r3d_18": 3,
    "r2plus1d_18": 3,
    "mc3_18": 3,
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHT_FILES = (".pt", ".pth", ".safetensors")


def _torchvision():
    try:
        import torchvision
    except (ImportError, OSError, RuntimeError) as exc:  # also a build for another torch
        raise ImportError(
            "TorchvisionEncoder needs torchvision, built for the installed torch: "
            f"pip install sk-i2m2[vision] ({type(exc).__name__}: {exc})."
        ) from exc
    return torchvision


@REGISTRY.register("encoder")
class TorchvisionEncoder(EncoderSpec):
    """A torchvision backbone, pretrained or not, for images or volumes.

    Needs the ``vision`` extra (``pip install sk-i2m2[vision]``). 2-D
    classification models (ResNet, DenseNet, EfficientNet, ConvNeXt, ViT,
    ...) take images ``(n, C, H, W)`` or ``(n, H, W)``; video models
    (``r3d_18``, ``r2plus1d_18``, ``mc3_18``) take volumes
    ``(n, C, D, H, W)`` or ``(n, D, H, W)``, the depth as time. The input
    is adapted to the backbone: one channel is repeated to three, the
    spatial sides are resized to the weights' input size (a volume keeps
    its depth), and values are normalised with the weights' own mean and
    standard deviation, so images should be scaled to [0, 1]. The
    classification head is removed: the encoder outputs the backbone's
    features.

    Parameters
    ----------
    name : str, default="resnet18"
        A torchvision model name (``torchvision.models.list_models()``).
    weights : "DEFAULT", str, path or None, default="DEFAULT"
        ``"DEFAULT"`` or a weights name of the model (e.g.
        ``"IMAGENET1K_V2"``): torchvision's pretrained weights, downloaded
        once to torch's cache. A path to a ``.pt``/``.pth``/``.safetensors``
        state dict (of the model with or without its head): those weights,
        with the default weights' normalisation. ``None``: random
        initialisation, ImageNet normalisation (offline).
    trainable : {"none", "last", "all"} or int, default="none"
        Which parameters train: ``"none"`` freezes the backbone (it stays
        in eval mode, and the estimator computes its features once per fit
        and per prediction); ``"all"`` fine-tunes everything; ``"last"`` or
        ``k`` fine-tunes the last block or last ``k`` blocks (e.g. a
        ResNet's ``layer4``) and what follows them. Frozen BatchNorm
        layers keep their statistics.
    """

    standardizes_input = False

    def __init__(self, name="resnet18", weights="DEFAULT", trainable="none"):
        self.name = name
        self.weights = weights
        self.trainable = trainable

    @property
    def frozen(self):
        return self.trainable in ("none", 0)

    def _weights_file(self):
        weights = self.weights
        if isinstance(weights, os.PathLike) or (
            isinstance(weights, str) and (weights.endswith(_WEIGHT_FILES) or os.sep in weights)
        ):
            return os.fspath(weights)
        return None

    def _ndim(self, tv):
        return 3 if self.name in tv.models.list_models(module=tv.models.video) else 2

    def check_sample_shape(self, modality, sample_shape):
        tv = _torchvision()
        known = tv.models.list_models(module=tv.models) + tv.models.list_models(
            module=tv.models.video
        )
        if self.name not in known:
            raise ValueError(
                f"Unknown torchvision backbone {self.name!r} for modality {modality!r}; "
                f"e.g. {sorted(BACKBONES)} (any of torchvision.models.list_models() for "
                "classification or video)."
            )
        if not (
            self.trainable in ("all", "none", "last")
            or (isinstance(self.trainable, numbers.Integral) and self.trainable >= 0)
        ):
            raise ValueError(
                f"TorchvisionEncoder.trainable of modality {modality!r} must be 'all', "
                f"'none', 'last' or a number of blocks; got {self.trainable!r}."
            )
        path = self._weights_file()
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(
                f"The weights file {path!r} of modality {modality!r} does not exist."
            )
        if path is None and self.weights is not None:
            names = [w.name for w in tv.models.get_model_weights(self.name)] + ["DEFAULT"]
            if self.weights not in names:
                raise ValueError(
                    f"Unknown weights {self.weights!r} for {self.name} (modality "
                    f"{modality!r}); expected one of {names}, a weights file or None."
                )
        ndim = self._ndim(tv)
        kind = "images (n, C, H, W) or (n, H, W)" if ndim == 2 else "volumes (n, C, D, H, W)"
        has_channels = len(sample_shape) == ndim + 1
        if len(sample_shape) not in (ndim, ndim + 1) or (
            has_channels and sample_shape[0] not in (1, 3)
        ):
            raise ValueError(
                f"Modality {modality!r} has samples of shape {tuple(sample_shape)}, but "
                f"{self.name} takes {kind} with 1 or 3 channels."
            )

    def build(self, sample_shape):
        tv = _torchvision()
        weight_enum = tv.models.get_model_weights(self.name)
        path = self._weights_file()
        pretrained = weight_enum[self.weights] if self.weights is not None and not path else None
        model = tv.models.get_model(self.name, weights=pretrained)
        with_head = set(model.state_dict())
        remove_head(model)
        if path:
            _load_weights(model, path, head=with_head - set(model.state_dict()))
        set_trainable(model, self.trainable)
        preset = (pretrained or weight_enum.DEFAULT).transforms()
        mean, std = (
            (_IMAGENET_MEAN, _IMAGENET_STD) if self.weights is None else (preset.mean, preset.std)
        )
        ndim = self._ndim(tv)
        size = list(preset.crop_size) * (2 if len(preset.crop_size) == 1 else 1)
        adapter = BackboneAdapter(
            model, ndim, size, mean, std, add_channel_axis=len(sample_shape) == ndim
        )
        return FrozenModule(adapter) if self.frozen else Flatten(adapter)

    def architecture_only(self):
        """The same backbone without pretrained weights (a saved model's weights replace them)."""
        return type(self)(self.name, weights=None, trainable=self.trainable)


def _load_weights(model, path, head):
    """Load the state dict in ``path`` into ``model`` (its head, ``head`` keys, removed)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [key for key in unexpected if key not in head]
    if missing or unexpected:
        raise ValueError(
            f"The weights in {path!r} do not fit {type(model).__name__}: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}."
        )


for _name in BACKBONES:
    REGISTRY.register_factory("encoder", _name, functools.partial(TorchvisionEncoder, _name))
