"""Encoder specifications: small objects with hyperparameters that build torch modules.

An encoder maps a batch of one modality, shape ``(batch, *sample_shape)``, to
features of shape ``(batch, out_features)``. Specs are scikit-learn style
objects (``get_params``/``set_params``), so an :class:`~sk_i2m2.I2M2Classifier`
exposes them as ``encoders__<modality>__<param>`` for ``GridSearchCV``.
"""

from __future__ import annotations

import abc
import copy
import functools
import inspect
import math
import numbers
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from torch import nn

from ._registry import REGISTRY
from .fusion import ConcatFusion
from .nn.encoders import MLP, ConvNet, Flatten, GRUNet
from .nn.frozen import FrozenModule
from .nn.vision import BackboneAdapter, remove_head, set_trainable

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


class EncoderSpec(BaseEstimator, metaclass=abc.ABCMeta):
    """Base class of encoder specifications.

    Subclasses store hyperparameters in ``__init__`` and implement
    :meth:`build`. ``sample_ndims`` lists the per-sample numbers of
    dimensions the encoder accepts.
    """

    sample_ndims: tuple = ()
    #: Whether the estimator standardises this modality's input in front of
    #: the encoder (when ``standardize=True``).
    standardizes_input = True
    #: Whether the encoder's parameters never train. The estimator then
    #: computes its features once per ``fit`` and once per prediction,
    #: shared by every expert of the modality (see :mod:`sk_i2m2.nn.frozen`).
    frozen = False

    def feature_axes(self, sample_shape):
        """Per-sample axes whose entries get their own input statistics.

        Standardisation averages over samples and every other axis; by
        default each entry of a sample is scaled on its own.
        """
        return tuple(range(len(sample_shape)))

    @abc.abstractmethod
    def build(self, sample_shape):
        """Return a fresh ``torch.nn.Module`` for samples of ``sample_shape``."""

    def build_inter(self, sample_shape, fusion):
        """The module that encodes this modality inside the inter expert.

        ``fusion`` is the inter expert's :class:`~sk_i2m2.fusion.FusionSpec`.
        The same as :meth:`build` unless a spec says otherwise (see
        :class:`MLPEncoder`'s ``inter_hidden_sizes``).
        """
        return self.build(sample_shape)

    def check_sample_shape(self, modality, sample_shape):
        """Raise ``ValueError`` if this encoder cannot take ``sample_shape``."""
        if self.sample_ndims and len(sample_shape) not in self.sample_ndims:
            shapes = " or ".join(f"{d + 1}-D (n_samples, ...) arrays" for d in self.sample_ndims)
            raise ValueError(
                f"Modality {modality!r} has samples of shape {tuple(sample_shape)} "
                f"({len(sample_shape) + 1}-D input) but {type(self).__name__} takes "
                f"{shapes}."
            )


@REGISTRY.register("encoder", "mlp")
class MLPEncoder(EncoderSpec):
    """Multi-layer perceptron for vector modalities ``(n_samples, n_features)``.

    Parameters
    ----------
    hidden_sizes : tuple of int, default=(128, 64)
        Width of each hidden layer; the last one is the feature size.
    dropout : float, default=0.1
        Dropout after every hidden layer.
    inter_hidden_sizes : "auto", tuple of int or None, default="auto"
        Hidden layers of this modality's encoder inside the inter expert.
        ``()`` hands the (standardised) features straight to the fusion:
        with ``fusion="concat"`` the inter expert is then one hidden layer
        (the fusion's ``hidden_size``) on every modality's inputs at once,
        so an interaction across modalities, such as the agreement of two
        features' signs, is one hidden layer away. Behind the default
        ``(128, 64)`` encoders the fused features start at about a tenth of
        the inputs' scale (torch's default initialisation), so a product of
        two modalities' features starts about a hundred times smaller; in
        ``benchmarks/targets.py`` such an interaction label stayed at
        chance while the other labels overfitted. ``None`` uses
        ``hidden_sizes`` (late fusion of deep per-modality features).
        ``"auto"`` is ``()`` for the concat fusion and ``None`` for the
        others: low-rank tensor fusion multiplies projections of its
        inputs, which on mfeat's raw views scored 2-3 points lower than on
        learned features.
    """

    sample_ndims = (1,)
    #: Parameters added since 0.1.0, with the values that rebuild the
    #: encoders of models saved before them (read by ``load``).
    saved_before = {"inter_hidden_sizes": None}

    def __init__(self, hidden_sizes=(128, 64), dropout=0.1, inter_hidden_sizes="auto"):
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.inter_hidden_sizes = inter_hidden_sizes

    def feature_axes(self, sample_shape):
        return (0,)

    def build(self, sample_shape):
        return MLP(int(sample_shape[0]), tuple(self.hidden_sizes), self.dropout)

    def build_inter(self, sample_shape, fusion):
        sizes = self.inter_hidden_sizes
        if sizes == "auto":
            sizes = () if isinstance(fusion, ConcatFusion) else None
        if sizes is None:
            return self.build(sample_shape)
        return MLP(int(sample_shape[0]), tuple(sizes), self.dropout)


def _default_channels(spatial):
    # One block per halving of the smallest side down to about 4, 1 to 4 blocks,
    # 16 channels doubling per block up to 64.
    n_blocks = min(4, max(1, int(math.log2(max(min(spatial), 2) / 4)) + 1))
    return tuple(min(16 * 2**i, 64) for i in range(n_blocks))


#: Smallest side below which a default conv encoder's first convolution keeps
#: the full resolution.
WORKING_SIDE = 56


def _default_first_stride(spatial):
    # The power of two that brings the smallest side down to between 56 and
    # 111 (2 for 112 x 112). On AV-MNIST's 112 x 112 spectrogram (CPU, see
    # benchmarks/avmnist_cpu.py) stride 2 cost a quarter of the full
    # resolution per epoch and was more accurate; stride 4 was cheaper still
    # but lost the frequency detail the spectrogram's classes differ by.
    return 2 ** max(0, int(math.log2(min(spatial) / WORKING_SIDE)))


class _ConvSpec(EncoderSpec):
    ndim = 2
    #: Parameters added since 0.1.0, with the values that rebuild the
    #: encoders of models saved before them (read by ``load``).
    saved_before = {"first_stride": 1}

    def __init__(self, channels=None, pool_size=2, dropout=0.0, first_stride=None):
        self.channels = channels
        self.pool_size = pool_size
        self.dropout = dropout
        self.first_stride = first_stride

    def feature_axes(self, sample_shape):
        # Per channel; an image without a channel axis has one statistic.
        return (0,) if len(sample_shape) == self.ndim + 1 else ()

    def build(self, sample_shape):
        has_channels = len(sample_shape) == self.ndim + 1
        spatial = tuple(sample_shape[-self.ndim :])
        in_channels = int(sample_shape[0]) if has_channels else 1
        stride = self.first_stride or _default_first_stride(spatial)
        if self.channels is None:
            # Blocks for the side left after the first convolution.
            channels = _default_channels(tuple(-(-side // stride) for side in spatial))
        else:
            channels = self.channels
        net = ConvNet(
            self.ndim,
            in_channels,
            spatial,
            tuple(channels),
            self.pool_size,
            self.dropout,
            first_stride=stride,
        )
        net.add_channel_axis = not has_channels
        return net


@REGISTRY.register("encoder", "conv2d")
class Conv2dEncoder(_ConvSpec):
    """LeNet-style 2-D conv net for images ``(n, C, H, W)`` or ``(n, H, W)``.

    A 5x5 conv block then 3x3 conv blocks (conv, BatchNorm, ReLU,
    max-pool), as in the experts of the I2M2 paper, followed by an adaptive
    average pool.

    Parameters
    ----------
    channels : tuple of int or None, default=None
        Output channels of each block. ``None`` picks one block per halving
        of the smallest image side down to about 4 (1 to 4 blocks), with
        16, 32, 64, 64 channels.
    pool_size : int, default=2
        Side of the final adaptive average pool; features are
        ``channels[-1] * pool_size**2``.
    dropout : float, default=0.0
        Dropout on the features.
    first_stride : int or None, default=None
        Stride of the first (5x5) convolution. ``None`` keeps the full
        resolution for images whose smallest side is below 112 and
        otherwise picks the power of two that brings it down to 56-111 (2
        for 112x112), which makes training on large images, e.g.
        spectrograms, several times cheaper; ``channels=None`` then counts
        the halvings from the reduced side. Pass 1 for the full resolution.
    """

    ndim = 2
    sample_ndims = (2, 3)


@REGISTRY.register("encoder", "conv3d")
class Conv3dEncoder(_ConvSpec):
    """3-D conv net for volumes ``(n, C, D, H, W)``.

    Same structure and parameters as :class:`Conv2dEncoder` with 3-D
    convolutions; features are ``channels[-1] * pool_size**3``.

    Parameters
    ----------
    channels : tuple of int or None, default=None
        Output channels of each block; ``None`` chooses from the volume size.
    pool_size : int, default=2
        Side of the final adaptive average pool.
    dropout : float, default=0.0
        Dropout on the features.
    first_stride : int or None, default=None
        Stride of the first convolution; ``None`` chooses from the volume
        size as for :class:`Conv2dEncoder`.
    """

    ndim = 3
    sample_ndims = (3, 4)


@REGISTRY.register("encoder", "gru")
class GRUEncoder(EncoderSpec):
    """GRU for sequences ``(n_samples, n_steps, n_features)``.

    Features are the last layer's final hidden state (both directions
    concatenated when bidirectional).

    Parameters
    ----------
    hidden_size : int, default=64
    num_layers : int, default=1
    bidirectional : bool, default=True
    dropout : float, default=0.0
        Dropout between GRU layers (only with ``num_layers > 1``).
    """

    sample_ndims = (2,)

    def __init__(self, hidden_size=64, num_layers=1, bidirectional=True, dropout=0.0):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout

    def feature_axes(self, sample_shape):
        return (len(sample_shape) - 1,)

    def build(self, sample_shape):
        return GRUNet(
            int(sample_shape[-1]),
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.dropout,
        )


@REGISTRY.register("encoder")
class ModuleEncoder(EncoderSpec):
    """Any user ``torch.nn.Module`` as an encoder.

    The module must map a batch of the modality, ``(batch, *sample_shape)``,
    to features ``(batch, n_features)`` (or anything that flattens to
    that). The feature size is found by a forward pass on two samples.

    Parameters
    ----------
    module : torch.nn.Module class, callable or instance
        A class or factory is called as ``module(**module_kwargs)`` for
        each expert that reads this modality; an instance is deep-copied
        for each expert.
    module_kwargs : dict or None, default=None
        Keyword arguments for a module class or factory.
    trainable : bool, default=True
        ``False`` freezes the module (e.g. a pretrained backbone used as a
        fixed feature extractor): its parameters get no gradients, it stays
        in eval mode (BatchNorm running statistics, no dropout), and the
        estimator computes its features once per ``fit`` and once per
        prediction instead of on every batch, one copy shared by the intra
        and inter experts (a class or factory is called once).
    standardize : bool, default=False
        Whether the estimator standardises this modality in front of the
        module when ``standardize=True``. Off by default because
        pretrained backbones expect their own input normalisation.
    """

    def __init__(self, module, module_kwargs=None, trainable=True, standardize=False):
        self.module = module
        self.module_kwargs = module_kwargs
        self.trainable = trainable
        self.standardize = standardize

    @property
    def standardizes_input(self):
        return self.standardize

    @property
    def frozen(self):
        return not self.trainable

    def build(self, sample_shape):
        if isinstance(self.module, nn.Module):
            net = copy.deepcopy(self.module)
        elif callable(self.module):
            net = self.module(**(self.module_kwargs or {}))
            if not isinstance(net, nn.Module):
                raise TypeError(
                    f"ModuleEncoder factory {self.module!r} returned "
                    f"{type(net).__name__}, not a torch.nn.Module."
                )
        else:
            raise TypeError(
                "ModuleEncoder.module must be a torch.nn.Module class, factory or "
                f"instance; got {type(self.module).__name__}."
            )
        return Flatten(net) if self.trainable else FrozenModule(net)


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
