"""I2M2Classifier: validation, label encoding, staged fit, prediction."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from . import _persistence
from ._data import BatchSlicer, ModalityTensorDataset
from ._module import (
    INTER,
    PRESENT,
    Encoder,
    ExpertsNLLLoss,
    I2M2Module,
    InterExpert,
    IntraExpert,
    ProductOfExpertsNLLLoss,
    Standardize,
    combine,
    feature_size,
)
from ._net import StageNet, optimizer_speed_kwargs
from ._validation import as_python, check_modalities, check_target
from .callbacks import ExpertCheckpoint, FiniteLossCheck
from .encoders import _KINDS, EncoderSpec, _ConvNet, resolve_encoder
from .fusion import FusionSpec, resolve_fusion

__all__ = ["I2M2Classifier"]


class I2M2Classifier(ClassifierMixin, BaseEstimator):
    """I2M2 multi-modal classifier: a product of intra- and inter-modality experts.

    Models ``p(y | x_1..x_M) ∝ prod_k q_k(y | x_k) * q_inter(y | x_1..x_M)``
    (Madaan et al., "Jointly Modeling Inter- & Intra-Modality Dependencies
    for Multi-modal Learning", NeurIPS 2024). Each intra expert ``q_k`` is a
    classifier on one modality; the inter expert ``q_inter`` classifies the
    fused features of all modalities. Their logits are summed and
    normalised with one ``log_softmax``, which is exactly the normalised
    product of the experts.

    Training runs in two stages, each a skorch ``NeuralNet`` (so skorch
    callbacks and history apply):

    1. **pretrain** -- every expert is trained on its own loss (the experts
       share no parameters, so training them side by side is the same as
       training each alone on the same batches); each expert's best epoch
       on the validation split is kept.
    2. **finetune** -- the product of the pretrained experts is trained
       jointly on the I2M2 objective at ``finetune_lr`` (10x lower than
       ``lr`` by default, as in the paper), restoring the best epoch on the
       same validation split.

    Parameters
    ----------
    dependencies : {"both", "intra", "inter"}, default="both"
        Which dependencies to model: ``"both"`` is I2M2 (every intra expert
        and the inter expert); ``"intra"`` the product of the intra experts
        only; ``"inter"`` the inter expert only. With a single modality all
        three are one unimodal classifier.
    fusion : {"concat", "lrtf"} or FusionSpec, default="concat"
        Fusion of the inter expert: ``"concat"`` (late fusion,
        :class:`~sk_i2m2.fusion.ConcatFusion`) or ``"lrtf"`` (low-rank
        tensor fusion, :class:`~sk_i2m2.fusion.LowRankTensorFusion`). Pass a
        spec object to set its hyperparameters (``fusion__rank`` etc.).
    encoders : dict or None, default=None
        Modality name -> encoder: an :class:`~sk_i2m2.encoders.EncoderSpec`
        (e.g. ``MLPEncoder(hidden_sizes=(256,))``), a kind name (``"mlp"``,
        ``"conv2d"``, ``"conv3d"``, ``"gru"``), or a ``torch.nn.Module``
        class, factory or instance mapping a batch to ``(batch, features)``.
        Modalities not listed get a default encoder chosen from their shape
        (see :func:`~sk_i2m2.encoders.infer_encoder_kind`). Spec
        hyperparameters are reachable as ``encoders__<modality>__<param>``.
    max_epochs : int, default=100
        Maximum epochs of stage 1 (pretraining the experts).
    finetune_epochs : int or None, default=None
        Maximum epochs of stage 2 (joint fine-tuning); ``None`` means
        ``max_epochs``, 0 skips stage 2 (the product of the independently
        trained experts is used as is).
    lr : float, default=1e-3
        Learning rate of stage 1.
    finetune_lr : float or None, default=None
        Learning rate of stage 2; ``None`` means ``lr / 10``.
    batch_size : int or "auto", default="auto"
        Mini-batch size. ``"auto"`` uses ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small cohorts, 256 on large
        data sets.
    optimizer : torch optimizer class, default=torch.optim.AdamW
    weight_decay : float, default=1e-4
        Passed to the optimizer.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data (stratified),
        stop a stage after ``n_iter_no_change`` epochs without improvement
        of the validation loss, and restore the best epoch. ``False``
        trains every stage for its full number of epochs on all data.
    validation_fraction : float, default=0.15
        Share of the training data held out when ``early_stopping=True``
        (at least one sample per class).
    n_iter_no_change : int, default=10
        Patience, in epochs, of early stopping.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in ``LogisticRegression``.
    inter_missing : {"null", "drop"}, default="null"
        How the inter expert handles a sample that misses a modality (see
        *Missing modalities* below): ``"null"`` puts a learned null
        embedding in place of the missing modality's features; ``"drop"``
        leaves the inter expert out of that sample's product.
    modality_dropout : float in [0, 1), default=0.0
        Probability with which each modality of each training sample is
        hidden from the inter expert (never all of a sample's modalities),
        which trains its null embeddings so that it degrades gracefully
        when modalities go missing. Only with ``inter_missing="null"``;
        no effect without an inter expert. 0 leaves complete data untouched.
    standardize : bool, default=True
        Standardise inputs inside the model with statistics of the training
        rows: per feature for vectors and sequences, per channel for images
        and volumes (a constant feature is only centred). Modalities with a
        user ``torch.nn.Module`` encoder are left alone unless its
        :class:`~sk_i2m2.encoders.ModuleEncoder` says otherwise.
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks added to both stages' nets.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    device_memory_budget : float in [0, 1], default=0.5
        On CUDA, the training data is copied to the GPU once when it takes at
        most this fraction of the GPU's free memory, and batches are then
        sliced on the GPU; larger data stays in host memory and each batch is
        copied through pinned memory. 0 always keeps data on the host.
    compile : bool, default=False
        Compile the model with ``torch.compile`` (skorch's ``compile``).
        Pays a compilation cost per stage; worth it for long runs on GPU.
    mixed_precision : bool, default=False
        Run forward passes under bfloat16 autocast. Off by default: for
        LeNet-sized experts on an H100 it was slower than float32 at batch
        sizes 40 and 256.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and the validation
        split; with an int, fitting twice on the CPU gives identical models.
    verbose : int, default=0
        0 is silent, 1 prints one line per stage, 2 also prints skorch's
        per-epoch table.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    modalities_ : list of str
        Modality names seen in ``fit``, in order.
    input_shapes_ : dict
        Modality -> per-sample shape seen in ``fit``.
    feature_names_in_ : dict
        Modality -> column names, for modalities passed as DataFrames.
    encoders_ : dict
        Modality -> the encoder spec that was used.
    expert_names_ : list of str
        Experts of the model: modality names (intra experts) and/or
        ``"inter"``.
    missing_rate_ : dict
        Modality -> fraction of the training samples that missed it.
    pretrain_net_ : skorch.NeuralNet or None
        Stage-1 net, holding the experts as pretrained (and its history);
        ``None`` in a model restored by :meth:`load`.
    finetune_net_ : skorch.NeuralNet or None
        Stage-2 net, or ``None`` when there is no stage 2 (a single
        expert, ``finetune_epochs=0``, an interrupted stage 1, or a model
        restored by :meth:`load`).
    interrupted_stage_ : str or None
        ``"pretrain"`` or ``"finetune"`` when a ``KeyboardInterrupt``
        stopped training in that stage (the model then holds the best
        weights so far and later stages were skipped), else ``None``.
    module_ : I2M2Module
        The fitted torch module used for prediction.
    device_ : torch.device
        Device the model was trained on.

    Notes
    -----
    **Missing modalities.** A sample misses a modality when all its values
    in that modality are NaN (a row of NaN in a table, an image of NaN), or,
    at prediction time, when the modality is left out of ``X`` altogether.
    Every sample needs at least one modality. The product then runs over
    the experts that can see the sample: an intra expert whose modality is
    missing contributes nothing (``expert_proba`` gives NaN for it), and the
    inter expert follows ``inter_missing``. In ``fit``, samples that miss a
    modality still train every expert that sees them. The null embeddings
    of the inter expert learn from training samples that miss a modality
    and from ``modality_dropout``; predicting with one that never learned
    warns.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_i2m2 import I2M2Classifier
    >>> rng = np.random.RandomState(0)
    >>> X = {"a": rng.randn(120, 4), "b": rng.randn(120, 3)}
    >>> y = (X["a"][:, 0] + X["b"][:, 0] > 0).astype(int)
    >>> clf = I2M2Classifier(max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (120, 2)
    >>> sorted(clf.expert_proba(X))
    ['a', 'b', 'inter']
    """

    _parameter_constraints = {
        "dependencies": [StrOptions({"both", "intra", "inter"})],
        "fusion": [StrOptions({"concat", "lrtf"}), FusionSpec],
        "encoders": [dict, None],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "finetune_epochs": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "finetune_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "optimizer": [type],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "inter_missing": [StrOptions({"null", "drop"})],
        "modality_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "standardize": ["boolean"],
        "callbacks": [list, None],
        "device": [str, torch.device],
        "device_memory_budget": [Interval(numbers.Real, 0, 1, closed="both")],
        "compile": ["boolean"],
        "mixed_precision": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        dependencies="both",
        fusion="concat",
        encoders=None,
        *,
        max_epochs=100,
        finetune_epochs=None,
        lr=1e-3,
        finetune_lr=None,
        batch_size="auto",
        optimizer=torch.optim.AdamW,
        weight_decay=1e-4,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
        class_weight=None,
        inter_missing="null",
        modality_dropout=0.0,
        standardize=True,
        callbacks=None,
        device="auto",
        device_memory_budget=0.5,
        compile=False,
        mixed_precision=False,
        random_state=None,
        verbose=0,
    ):
        self.dependencies = dependencies
        self.fusion = fusion
        self.encoders = encoders
        self.max_epochs = max_epochs
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.inter_missing = inter_missing
        self.modality_dropout = modality_dropout
        self.standardize = standardize
        self.callbacks = callbacks
        self.device = device
        self.device_memory_budget = device_memory_budget
        self.compile = compile
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------
    # Nested encoder parameters: ``encoders__<modality>__<param>``.

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        if deep and isinstance(self.encoders, Mapping):
            for name, spec in self.encoders.items():
                params[f"encoders__{name}"] = spec
                if isinstance(spec, EncoderSpec):
                    for key, value in spec.get_params(deep=True).items():
                        params[f"encoders__{name}__{key}"] = value
        return params

    def set_params(self, **params):
        nested = {k: params.pop(k) for k in list(params) if k.startswith("encoders__")}
        super().set_params(**params)
        if not nested:
            return self
        encoders = dict(self.encoders or {})
        for key in sorted(nested, key=lambda k: k.count("__")):
            name, _, sub = key[len("encoders__"):].partition("__")
            if not sub:
                encoders[name] = nested[key]
                continue
            spec = encoders.get(name)
            if isinstance(spec, str) and spec in _KINDS:
                spec = _KINDS[spec]()
            if not isinstance(spec, EncoderSpec):
                raise ValueError(
                    f"Cannot set {key!r}: encoders has no encoder spec for modality "
                    f"{name!r}. Pass encoders={{{name!r}: MLPEncoder()}} (or the "
                    "spec of its kind) to tune its hyperparameters."
                )
            encoders[name] = copy.deepcopy(spec).set_params(**{sub: nested[key]})
        self.encoders = encoders
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        tags.input_tags.sparse = True  # densified by _validation.check_modalities
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------
    # Input handling

    def _check_modalities(self, X, *, fitting):
        """Validate X: ``({modality: float32 CPU tensor}, columns, presence mask)``."""
        return check_modalities(X, fitted=None if fitting else self)

    def _resolve_device(self):
        if str(self.device) == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(
                f"device={self.device!r} is not a device torch knows ({exc}); use "
                "'auto', 'cpu', 'cuda' or 'cuda:<index>'."
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available.")
        return device

    # ------------------------------------------------------------------
    # Fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the experts (stage 1) and fine-tune their product (stage 2).

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like (numpy array, torch tensor or pandas
            DataFrame) with samples on the first axis.
        y : array-like of shape (n_samples,)
            Class labels of any type.

        Returns
        -------
        self : I2M2Classifier

        Raises
        ------
        TypeError, ValueError
            For invalid inputs or parameters, before any training; the
            message names the modality and the problem.
        FloatingPointError
            When a training loss becomes NaN or infinite.

        Any error leaves a previously fitted model as it was. A
        ``KeyboardInterrupt`` during training is not an error: ``fit``
        returns with a warning and the best weights so far (see
        ``interrupted_stage_``).
        """
        tensors, columns, present = self._check_modalities(X, fitting=True)
        n_samples = next(iter(tensors.values())).shape[0]
        classes, y_encoded = check_target(y, n_samples)
        if self.modality_dropout > 0 and self.inter_missing == "drop":
            raise ValueError(
                f"modality_dropout={self.modality_dropout} trains the inter expert's "
                "null embeddings, which inter_missing='drop' does not have; use "
                "inter_missing='null' or modality_dropout=0."
            )
        self._check_samples_have_an_expert(present, list(tensors))
        specs = self._resolve_encoders(tensors)
        fusion = resolve_fusion(self.fusion)
        device = self._resolve_device()

        # All checks passed: only now replace any previous fit. An error past
        # this point (too few samples to split, a diverging loss) puts the
        # previous fit back, so a failed refit never leaves a broken model.
        previous = _fitted_state(self)
        try:
            self.classes_ = classes
            self.modalities_ = list(tensors)
            self.input_shapes_ = {m: tuple(t.shape[1:]) for m, t in tensors.items()}
            self.missing_rate_ = {
                m: 0.0 if present is None else float(1 - present[:, i].float().mean())
                for i, m in enumerate(tensors)
            }
            self.feature_names_in_ = {m: c for m, c in columns.items() if c is not None}
            self.encoders_ = specs
            self.fusion_ = fusion
            self.device_ = device
            self.interrupted_stage_ = None

            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            fork_devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(seed)
                with _cudnn_benchmark(device.type == "cuda"):
                    self._fit_stages(tensors, present, y_encoded, seed, device)
        except BaseException:
            _restore_fitted_state(self, previous)
            raise
        return self

    def _resolve_encoders(self, tensors):
        given = dict(self.encoders or {})
        unknown = [name for name in given if name not in tensors]
        if unknown:
            raise ValueError(
                f"encoders names modality {unknown[0]!r}, which is not in X "
                f"(X has {sorted(tensors)})."
            )
        return {
            name: resolve_encoder(name, given.get(name), tuple(t.shape[1:]))
            for name, t in tensors.items()
        }

    def _expert_plan(self):
        """Expert names for ``dependencies`` and the fitted modalities."""
        if len(self.modalities_) == 1:
            return list(self.modalities_)
        intra = list(self.modalities_) if self.dependencies in ("both", "intra") else []
        inter = [INTER] if self.dependencies in ("both", "inter") else []
        return intra + inter

    def _build_module(self, X_train, n_classes, present=None):
        """The untrained experts; ``present`` marks the rows of ``X_train`` to learn
        the input scaling from (default all)."""
        def observed(name):
            x = X_train[name]
            if present is None:
                return x
            return x[present[:, self.modalities_.index(name)]]

        scalers = {}
        if self.standardize:
            for name, spec in self.encoders_.items():
                if spec.standardizes_input:
                    mean, scale = _moments(observed(name), spec, self.input_shapes_[name])
                    scalers[name] = (mean, scale)

        def make_encoder(name):
            spec = self.encoders_[name]
            body = spec.build(self.input_shapes_[name])
            scaler = Standardize(*scalers[name]) if name in scalers else None
            encoder = Encoder(body, scaler)
            example = observed(name)[:2].cpu()
            try:
                return encoder, feature_size(encoder, example)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise ValueError(
                    f"The encoder of modality {name!r} ({type(spec).__name__}) fails on "
                    f"a batch of shape {tuple(example.shape)}: {exc}"
                ) from exc

        experts = {}
        for name in self._expert_plan():
            if name == INTER:
                built = {m: make_encoder(m) for m in self.modalities_}
                encoders = {m: enc for m, (enc, _) in built.items()}
                sizes = [size for _, size in built.values()]
                experts[INTER] = InterExpert(
                    encoders, sizes, self.fusion_.build(sizes), n_classes,
                    self.fusion_.hidden_size, self.fusion_.dropout,
                    missing=self.inter_missing, modality_dropout=self.modality_dropout,
                )
            else:
                encoder, size = make_encoder(name)
                experts[name] = IntraExpert(name, self.modalities_.index(name), encoder,
                                            size, n_classes)
        return I2M2Module(experts)

    def _validation_split(self, y, seed):
        n = len(y)
        n_classes = len(self.classes_)
        n_valid = max(math.ceil(self.validation_fraction * n), n_classes)
        if n - n_valid < 2:
            raise ValueError(
                f"Too few samples ({n}) for a validation split of "
                f"validation_fraction={self.validation_fraction}; pass "
                "early_stopping=False to train on all samples."
            )
        counts = np.bincount(y, minlength=n_classes)
        if counts.min() >= 2 and n - n_valid >= n_classes:
            splitter = StratifiedShuffleSplit(1, test_size=n_valid, random_state=seed)
            return next(splitter.split(np.zeros(n), y))
        rare = self.classes_[np.argmin(counts)]
        warnings.warn(
            f"The validation split ({n_valid} of {n} samples) cannot be stratified: "
            f"class {as_python(rare)!r} has {counts.min()} "
            "sample(s). Using a random split instead, so early stopping may rest on "
            "few or no samples of that class; early_stopping=False trains on all "
            "samples.",
            UserWarning, stacklevel=5,
        )
        return next(ShuffleSplit(1, test_size=n_valid, random_state=seed).split(np.zeros(n)))

    def _class_weights(self, y):
        if self.class_weight is None:
            return None
        classes = np.arange(len(self.classes_))
        if isinstance(self.class_weight, dict):
            unknown = [c for c in self.class_weight if c not in set(self.classes_)]
            if unknown:
                raise ValueError(f"class_weight names class {unknown[0]!r}, not in y.")
            weights = np.array([self.class_weight.get(c, 1.0) for c in self.classes_])
        else:
            weights = compute_class_weight("balanced", classes=classes, y=y)
        return torch.as_tensor(weights, dtype=torch.float32)

    def _batch_size(self, n_train):
        if self.batch_size == "auto":
            return int(min(256, max(16, n_train // 16)))
        return int(self.batch_size)

    def _fit_stages(self, tensors, present, y, seed, device):
        n = len(y)
        if self.early_stopping:
            train_idx, valid_idx = self._validation_split(y, seed)
        else:
            train_idx, valid_idx = np.arange(n), None
        if present is not None:
            # The presence mask travels with the batches, like a modality.
            tensors = {**tensors, PRESENT: present}
        data_device = self._data_device(tensors, device)
        # One copy to where the data lives; the splits are sliced there.
        tensors = {m: t.to(data_device) for m, t in tensors.items()}

        def dataset(rows):
            rows = np.sort(rows)
            if len(rows) == n:
                split = tensors
            else:
                index = torch.as_tensor(rows, device=data_device)
                split = {m: t.index_select(0, index) for m, t in tensors.items()}
            return ModalityTensorDataset(
                {m: _place(t, data_device) for m, t in split.items()},
                torch.as_tensor(y[rows], dtype=torch.long, device=data_device),
            )

        train_ds = dataset(train_idx)
        valid_ds = dataset(valid_idx) if valid_idx is not None else None
        del tensors
        X_train = {m: t for m, t in train_ds.X.items() if m != PRESENT}
        self.module_ = None
        # Input statistics are computed where the data is (on the GPU when it fits).
        module = self._build_module(X_train, len(self.classes_), train_ds.X.get(PRESENT))
        module = module.to(device)
        self.expert_names_ = module.expert_names
        if device.type == "cuda":
            _to_channels_last(module)
        self.batch_size_ = self._batch_size(len(train_ds))
        weight = self._class_weights(y)
        generator = torch.Generator().manual_seed(seed)

        pretrain_checkpoint = ExpertCheckpoint(
            patience=self.n_iter_no_change if valid_ds is not None else None
        )
        self.pretrain_net_ = self._make_net(
            module, ExpertsNLLLoss, weight, self.lr, self.max_epochs, valid_ds,
            generator, device, [("expert_checkpoint", pretrain_checkpoint)],
        )
        self._run_stage("pretrain", self.pretrain_net_, train_ds)
        self.finetune_net_ = None

        finetune_epochs = self.max_epochs if self.finetune_epochs is None else self.finetune_epochs
        if len(self.expert_names_) > 1 and finetune_epochs > 0 and self.interrupted_stage_ is None:
            stage_callbacks = []
            if valid_ds is not None:
                stage_callbacks.append(("early_stopping", EarlyStopping(
                    monitor="valid_loss", patience=self.n_iter_no_change,
                    threshold=1e-4, load_best=True,
                )))
            finetune_lr = self.lr / 10 if self.finetune_lr is None else self.finetune_lr
            # A copy, so that pretrain_net_ keeps the experts as pretrained.
            self.finetune_net_ = self._make_net(
                copy.deepcopy(module), ProductOfExpertsNLLLoss, weight, finetune_lr,
                finetune_epochs, valid_ds, generator, device, stage_callbacks,
            )
            self._run_stage("finetune", self.finetune_net_, train_ds)
        final_net = self.finetune_net_ or self.pretrain_net_
        # skorch wraps the module when compile=True; keep the plain module.
        self.module_ = getattr(final_net.module_, "_orig_mod", final_net.module_)
        self.module_.eval()

    def _data_device(self, tensors, device):
        """Where the training data lives: on the GPU when it fits the budget.

        Data on the device is sliced in place each step; otherwise batches
        are copied from host memory as they are needed.
        """
        if device.type != "cuda" or self.device_memory_budget == 0:
            return torch.device("cpu")
        n_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        free, _ = torch.cuda.mem_get_info(device)
        return device if n_bytes <= self.device_memory_budget * free else torch.device("cpu")

    def _make_net(self, module, criterion, weight, lr, max_epochs, valid_ds,
                  generator, device, stage_callbacks):
        optimizer_kwargs = {
            f"optimizer__{k}": v
            for k, v in optimizer_speed_kwargs(self.optimizer, device).items()
        }
        return StageNet(
            module=module,
            criterion=criterion,
            criterion__weight=weight,
            optimizer=self.optimizer,
            optimizer__weight_decay=self.weight_decay,
            **optimizer_kwargs,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=self.batch_size_,
            iterator_train=BatchSlicer,
            iterator_train__shuffle=True,
            iterator_train__generator=generator,
            iterator_train__device=device,
            iterator_valid=BatchSlicer,
            iterator_valid__batch_size=max(4 * self.batch_size_, 1024),
            iterator_valid__device=device,
            compile=self.compile,
            mixed_precision=self.mixed_precision,
            train_split=predefined_split(valid_ds) if valid_ds is not None else None,
            callbacks=stage_callbacks + list(self.callbacks or []),
            device=device,
            verbose=int(self.verbose >= 2),
        )

    def _run_stage(self, stage, net, train_ds):
        start = time.perf_counter()
        # First of the stage's own callbacks, so a NaN loss raises before
        # early stopping can end the stage quietly.
        net.callbacks = [("finite_loss", FiniteLossCheck(stage)), *net.callbacks]
        net.fit(train_ds, y=None)
        # skorch ends fit quietly on any KeyboardInterrupt (early stopping
        # raises one too); the checkpoint callbacks have already restored
        # the best weights, so only the user's interrupt needs telling apart.
        if _interrupted_by_user(net):
            self.interrupted_stage_ = stage
            warnings.warn(
                f"Training was interrupted in the {stage} stage (epoch "
                f"{len(net.history)} of {net.max_epochs}). The model keeps the best "
                "weights so far and any later stage is skipped; fit again to train "
                "from scratch.",
                UserWarning, stacklevel=5,
            )
        if self.verbose:
            history = net.history
            # An interrupted last epoch has no train loss yet.
            losses = [row["train_loss"] for row in history if "train_loss" in row]
            line = f"[I2M2Classifier] {stage}: {len(history)} epochs in " \
                   f"{time.perf_counter() - start:.1f}s"
            if losses:
                line += f", train loss {losses[-1]:.4f}"
            checkpoint = dict(net.callbacks_).get("expert_checkpoint")
            if checkpoint is not None and checkpoint.best_epoch_.get(self.expert_names_[0]):
                line += "; best valid loss " + ", ".join(
                    f"{name} {checkpoint.best_loss_[name]:.4f} (epoch {epoch})"
                    for name, epoch in checkpoint.best_epoch_.items()
                )
            elif "valid_loss" in history[-1]:
                line += f", best valid loss {min(history[:, 'valid_loss']):.4f}"
            print(line, flush=True)

    # ------------------------------------------------------------------
    # Prediction

    def _expert_logits(self, X, module=None):
        """Expert logits of ``X`` and which experts see which sample, on the CPU.

        Returns ``(logits, available)``: stacked logits of shape ``(n_experts,
        n_samples, n_classes)``, 0 where an expert cannot see a sample, and
        a bool mask of shape ``(n_experts, n_samples)`` or ``None`` when
        every expert sees every sample. ``module`` defaults to the fitted
        model; pass ``pretrain_net_.module_`` for the experts as trained
        independently in stage 1.
        """
        check_is_fitted(self, "module_")
        module = self.module_ if module is None else module
        tensors, _, present = self._check_modalities(X, fitting=False)
        available = None
        if present is not None:
            self._check_samples_have_an_expert(present, self.modalities_)
            self._warn_untrained_null(present)
            tensors[PRESENT] = present
            available = module.availability({PRESENT: present})
        # Like in fit: the whole input on the GPU when it fits the budget.
        data_device = self._data_device(tensors, self.device_)
        tensors = {m: _place(t, data_device) for m, t in tensors.items()}
        # The module alone, not a skorch net: a model restored by ``load``
        # has no nets.
        batches = BatchSlicer(ModalityTensorDataset(tensors), max(4 * self.batch_size_, 1024),
                              device=self.device_)
        autocast = torch.autocast(self.device_.type, dtype=torch.bfloat16,
                                  enabled=bool(self.mixed_precision))
        module.eval()
        with torch.no_grad(), autocast:
            logits = torch.cat([module(**Xb).float().cpu() for Xb, _ in batches], dim=1)
        return logits, available

    def _check_samples_have_an_expert(self, present, modalities):
        """Refuse samples that no expert can see (inter expert alone, ``"drop"``)."""
        if (present is None or self.dependencies != "inter" or self.inter_missing != "drop"
                or present.shape[1] == 1):
            return
        unseen = torch.nonzero(~present.all(1)).flatten()
        if len(unseen):
            first = int(unseen[0])
            modality = modalities[int((~present[first]).nonzero()[0])]
            raise ValueError(
                f"{len(unseen)} sample(s) miss a modality (first sample {first}, missing "
                f"modality {modality!r}), but with dependencies='inter' and "
                "inter_missing='drop' no expert can see them; use inter_missing='null' "
                "or dependencies='both'."
            )


    def _warn_untrained_null(self, present):
        if INTER not in self.expert_names_ or self.inter_missing != "null":
            return
        if self.modality_dropout > 0:
            return
        untrained = [m for i, m in enumerate(self.modalities_)
                     if self.missing_rate_[m] == 0 and not bool(present[:, i].all())]
        if untrained:
            warnings.warn(
                f"Some samples miss modality {untrained[0]!r}, but the inter expert "
                "never learned a null embedding for it: no training sample missed it "
                "and modality_dropout=0. Its predictions on those samples are "
                "unreliable; refit with modality_dropout > 0 (e.g. 0.3) or "
                "inter_missing='drop'.",
                UserWarning, stacklevel=_caller_stacklevel(),
            )

    def predict_proba(self, X):
        """Class probabilities of the product of experts.

        Parameters
        ----------
        X : dict or ModalityDict
            The modalities seen in ``fit``; any may be left out or missing
            in some samples (all-NaN rows), as long as each sample has one.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to 1.
        """
        return combine(self._expert_logits(X)[0]).exp().numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        return combine(self._expert_logits(X)[0]).numpy()

    def predict(self, X):
        """Predicted class labels, taken from ``classes_``.

        Parameters
        ----------
        X : dict or ModalityDict

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        # predict_proba first: on an unfitted estimator it raises NotFittedError.
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def expert_proba(self, X):
        """Each expert's own class probabilities.

        Parameters
        ----------
        X : dict or ModalityDict

        Returns
        -------
        proba : dict
            Expert name (a modality name for an intra expert, ``"inter"``
            for the inter expert) -> ndarray of shape (n_samples, n_classes).
            Rows of samples an expert cannot see (its modality is missing;
            for the inter expert with ``inter_missing="drop"``, any
            modality is missing) are NaN.
        """
        return self._expert_proba(X)

    def _expert_proba(self, X, module=None):
        """:meth:`expert_proba` of ``module`` (see :meth:`_expert_logits`)."""
        logits, available = self._expert_logits(X, module)
        proba = torch.softmax(logits, dim=-1)
        if available is not None:
            proba = proba.masked_fill(~available.unsqueeze(-1), float("nan"))
        return {name: proba[i].numpy() for i, name in enumerate(self.expert_names_)}

    def modality_contributions(self, X):
        """Each expert's contribution to the log-probability of the predicted class.

        The product of experts adds the experts' log-probabilities, so a
        prediction decomposes exactly into one term per expert. For sample
        ``i`` with predicted class ``c``, expert ``k`` contributes
        ``log q_k(c | x_i)`` minus the mean of ``log q_k(. | x_i)`` over the
        classes: positive when the expert favours ``c`` over the average
        class, negative when it argues against ``c``, 0 when it abstains
        (its modality is missing). The terms of a sample sum to
        ``log p(c | x_i)`` minus the mean of ``log p(. | x_i)`` over the
        classes, ``p`` being the model's :meth:`predict_proba`.

        Parameters
        ----------
        X : dict or ModalityDict
            As for :meth:`predict_proba`.

        Returns
        -------
        contributions : pandas.DataFrame of shape (n_samples, n_experts)
            One column per expert, in the order of ``expert_names_``; the
            predicted classes are in ``contributions.attrs["predicted"]``.
        """
        logits, _ = self._expert_logits(X)
        predicted = combine(logits).argmax(-1)
        # Centring removes each expert's normaliser, so raw logits will do.
        centred = logits - logits.mean(-1, keepdim=True)
        chosen = centred.gather(2, predicted.view(1, -1, 1).expand(len(logits), -1, 1))
        frame = pd.DataFrame(chosen.squeeze(2).T.numpy(), columns=list(self.expert_names_))
        frame.attrs["predicted"] = self.classes_[predicted.numpy()]
        return frame

    # ------------------------------------------------------------------
    # Persistence

    def save(self, path):
        """Save the fitted model to the directory ``path``.

        Writes ``config.json`` (the parameters, the fitted metadata such as
        ``classes_``, ``modalities_`` and ``input_shapes_``, and the encoder
        and fusion specs by class name and parameters) and
        ``model.safetensors`` (the weights, as CPU tensors). Neither file
        holds code, so :meth:`load` never unpickles anything, and a model
        trained on CUDA loads on a machine without a GPU. The training
        nets (``pretrain_net_``, ``finetune_net_``) and their histories are
        not saved.

        Parameters that are not data (``callbacks``, a ``RandomState``
        instance, an optimizer outside ``torch.optim``) are left out with a
        warning. A custom torch module encoder is saved as its weights
        only: pass the module again to :meth:`load`.

        Parameters
        ----------
        path : str or os.PathLike
            Directory to write; created if needed, existing files in it
            are replaced.
        """
        _persistence.save(self, path)

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
        estimator : I2M2Classifier
            Fitted; ``pretrain_net_`` and ``finetune_net_`` are ``None``.
        """
        return _persistence.load(cls, path, encoders=encoders, device=device)


def _caller_stacklevel():
    """``stacklevel`` that makes a warning point at the first caller outside this package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _interrupted_by_user(net):
    """Whether a KeyboardInterrupt other than early stopping ended ``net.fit``."""
    history = net.history
    if len(history) >= net.max_epochs and "train_loss" in history[-1]:
        return False
    for _, callback in net.callbacks_:
        if getattr(callback, "stopped_early_", False):
            return False
        if isinstance(callback, EarlyStopping) and callback.misses_ >= callback.patience:
            return False
    return True


def _fitted_state(estimator):
    """The fitted attributes (public names ending in ``_``) of ``estimator``."""
    return {k: v for k, v in vars(estimator).items()
            if k.endswith("_") and not k.startswith("_")}


def _restore_fitted_state(estimator, state):
    for key in _fitted_state(estimator):
        delattr(estimator, key)
    vars(estimator).update(state)


def _moments(x, spec, sample_shape, chunk=4096):
    """Mean and scale of ``x`` over samples, per feature / channel.

    Two passes in float64 over chunks of rows, so large image sets are not
    copied whole and values at 1e6 keep their variance.
    """
    keep = spec.feature_axes(sample_shape)
    reduce = [0] + [1 + a for a in range(len(sample_shape)) if a not in keep]
    total = sum(c.double().sum(reduce, keepdim=True) for c in x.split(chunk))
    count = x.numel() / total.numel()
    mean = total / count
    squares = sum(((c.double() - mean) ** 2).sum(reduce, keepdim=True) for c in x.split(chunk))
    scale = (squares / count).sqrt()
    scale[scale <= 1e-12 * mean.abs().clamp_min(1.0)] = 1.0
    return mean.squeeze(0).float().cpu(), scale.squeeze(0).float().cpu()


@contextlib.contextmanager
def _cudnn_benchmark(enabled):
    """Let cuDNN pick the fastest convolution algorithms during fit.

    Batch shapes repeat every step, so the one-off search pays for itself.
    The user's setting is restored afterwards.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _place(tensor, device):
    """Copy ``tensor`` to ``device``; image-like data in channels-last layout on CUDA."""
    tensor = tensor.to(device)
    if device.type == "cuda" and tensor.dim() in (4, 5):
        layout = torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d
        tensor = tensor.contiguous(memory_format=layout)
    return tensor


def _to_channels_last(module):
    """Channels-last weights for conv encoders: faster cuDNN kernels on GPU."""
    for sub in module.modules():
        if isinstance(sub, _ConvNet):
            sub.to(memory_format=torch.channels_last if sub.ndim == 2
                   else torch.channels_last_3d)
