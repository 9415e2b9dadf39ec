"""The encoder specification base class and the encoders trained from scratch.

:class:`EncoderSpec` and the specs that build the package's own torch
modules (:mod:`sk_i2m2.nn.encoder_modules`) or wrap a user's module. The
public names live in :mod:`sk_i2m2.encoders`.
"""

from __future__ import annotations

import abc
import copy
import math
import numbers

from sklearn.base import BaseEstimator
from torch import nn

from ._registry import REGISTRY
from .nn.encoder_modules import MLP, ConvNet, Flatten, GRUNet
from .nn.frozen import FrozenModule

__all__ = [
    "EncoderSpec",
    "MLPEncoder",
    "Conv2dEncoder",
    "Conv3dEncoder",
    "GRUEncoder",
    "ModuleEncoder",
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
    inter_hidden_sizes : tuple of int or None, default=None
        Hidden layers of this modality's encoder inside the inter expert;
        ``None`` uses ``hidden_sizes`` (late fusion of deep per-modality
        features). ``()`` hands the (standardised) features straight to the
        fusion: with the concat fusion the inter expert is then one hidden
        layer (the fusion's ``hidden_size``) on every modality's inputs at
        once, so an interaction across modalities is one hidden layer away
        rather than behind deep encoders whose features start far below the
        inputs' scale. Which learns an interaction sooner depends on the
        data (see the encoders guide).
    """

    sample_ndims = (1,)
    #: Parameters added since 0.1.0, with the values that rebuild the
    #: encoders of models saved before them (read by ``load``).
    saved_before = {"inter_hidden_sizes": None}

    def __init__(self, hidden_sizes=(128, 64), dropout=0.1, inter_hidden_sizes=None):
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.inter_hidden_sizes = inter_hidden_sizes

    def check_sample_shape(self, modality, sample_shape):
        super().check_sample_shape(modality, sample_shape)
        # Checked with the modality's name before training, not by torch in it.
        for name, sizes in [
            ("hidden_sizes", self.hidden_sizes),
            ("inter_hidden_sizes", self.inter_hidden_sizes),
        ]:
            if sizes is None and name == "inter_hidden_sizes":
                continue
            if not isinstance(sizes, (tuple, list)) or not all(
                isinstance(size, numbers.Integral) and size > 0 for size in sizes
            ):
                raise ValueError(
                    f"The MLPEncoder of modality {modality!r} has {name}={sizes!r}; "
                    "expected a tuple of positive ints"
                    + (" or None." if name == "inter_hidden_sizes" else ".")
                )

    def feature_axes(self, sample_shape):
        return (0,)

    def build(self, sample_shape):
        return MLP(int(sample_shape[0]), tuple(self.hidden_sizes), self.dropout)

    def build_inter(self, sample_shape, fusion):
        if self.inter_hidden_sizes is None:
            return self.build(sample_shape)
        return MLP(int(sample_shape[0]), tuple(self.inter_hidden_sizes), self.dropout)


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
