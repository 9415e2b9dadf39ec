"""I2M2Classifier: validation, label encoding, staged fit, prediction."""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from ._data import BatchSlicer, ModalityTensorDataset
from ._module import (
    INTER,
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
from .callbacks import ExpertCheckpoint
from .encoders import _KINDS, EncoderSpec, resolve_encoder
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
    pretrain_net_ : skorch.NeuralNet
        Stage-1 net, holding the experts as pretrained (and its history).
    finetune_net_ : skorch.NeuralNet or None
        Stage-2 net, or ``None`` when there is no stage 2 (a single
        expert, or ``finetune_epochs=0``).
    module_ : I2M2Module
        The fitted torch module used for prediction.
    device_ : torch.device
        Device the model was trained on.

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
        "standardize": ["boolean"],
        "callbacks": [list, None],
        "device": [str, torch.device],
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
        standardize=True,
        callbacks=None,
        device="auto",
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
        self.standardize = standardize
        self.callbacks = callbacks
        self.device = device
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
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------
    # Input handling

    def _check_modalities(self, X, *, fitting):
        """Validate X and return ``{modality: float32 CPU tensor}``."""
        if not isinstance(X, Mapping):
            raise TypeError(
                "X must be a mapping of modality name to array (a dict or "
                f"ModalityDict); got {type(X).__name__}. Wrap a single array as "
                "{'name': array}."
            )
        if len(dict(X)) == 0:
            raise ValueError("X is an empty mapping; it needs at least one modality.")
        if not fitting:
            missing = [m for m in self.modalities_ if m not in X]
            if missing:
                raise ValueError(
                    f"Modality {missing[0]!r} was seen in fit but is missing from X "
                    f"(X has {sorted(X)})."
                )
            extra = [m for m in X if m not in self.modalities_]
            if extra:
                raise ValueError(
                    f"Modality {extra[0]!r} was not seen in fit (fitted modalities: "
                    f"{self.modalities_})."
                )
        names = list(X) if fitting else self.modalities_
        tensors, columns = {}, {}
        for name in names:
            tensors[name], columns[name] = _as_float_tensor(name, X[name])
        counts = {name: t.shape[0] for name, t in tensors.items()}
        first = names[0]
        for name, n in counts.items():
            if n == 0:
                raise ValueError(f"Modality {name!r} has 0 samples.")
            if n != counts[first]:
                raise ValueError(
                    f"Modality {name!r} has {n} samples but modality {first!r} has "
                    f"{counts[first]}; all modalities must have the same number of "
                    "samples."
                )
        if fitting:
            return tensors, columns
        for name, t in tensors.items():
            shape = tuple(t.shape[1:])
            if shape != self.input_shapes_[name]:
                raise ValueError(
                    f"Modality {name!r} has samples of shape {shape} but had "
                    f"{self.input_shapes_[name]} in fit."
                )
            fitted_columns = self.feature_names_in_.get(name)
            if fitted_columns is not None and columns[name] is not None \
                    and list(columns[name]) != list(fitted_columns):
                raise ValueError(
                    f"Modality {name!r}: DataFrame columns differ from those seen in "
                    f"fit (same names in the same order expected); got "
                    f"{list(columns[name])[:5]}..., expected {list(fitted_columns)[:5]}..."
                )
        return tensors, columns

    def _resolve_device(self):
        if str(self.device) == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
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
        """
        tensors, columns = self._check_modalities(X, fitting=True)
        n_samples = next(iter(tensors.values())).shape[0]
        y = np.asarray(y)
        if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
            raise ValueError(f"y must be 1-D (n_samples,); got shape {y.shape}.")
        y = y.ravel()
        if len(y) != n_samples:
            raise ValueError(
                f"y has {len(y)} samples but the modalities have {n_samples}."
            )
        target_type = type_of_target(y, input_name="y")
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"I2M2Classifier supports binary and multiclass targets; y is "
                f"{target_type!r}."
            )
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"y has a single class ({encoder.classes_[0]!r}); at least 2 are needed."
            )
        y_encoded = encoder.transform(y)
        specs = self._resolve_encoders(tensors)
        fusion = resolve_fusion(self.fusion)
        device = self._resolve_device()

        # All checks passed: only now replace any previous fit.
        self.classes_ = encoder.classes_
        self.modalities_ = list(tensors)
        self.input_shapes_ = {m: tuple(t.shape[1:]) for m, t in tensors.items()}
        self.feature_names_in_ = {m: c for m, c in columns.items() if c is not None}
        self.encoders_ = specs
        self.fusion_ = fusion
        self.device_ = device

        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            self._fit_stages(tensors, y_encoded, seed, device)
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

    def _build_module(self, X_train, n_classes):
        scalers = {}
        if self.standardize:
            for name, spec in self.encoders_.items():
                if spec.standardizes_input:
                    mean, scale = _moments(X_train[name], spec, self.input_shapes_[name])
                    scalers[name] = (mean, scale)

        def make_encoder(name):
            spec = self.encoders_[name]
            body = spec.build(self.input_shapes_[name])
            scaler = Standardize(*scalers[name]) if name in scalers else None
            encoder = Encoder(body, scaler)
            return encoder, feature_size(encoder, X_train[name][:2])

        experts = {}
        for name in self._expert_plan():
            if name == INTER:
                built = {m: make_encoder(m) for m in self.modalities_}
                encoders = {m: enc for m, (enc, _) in built.items()}
                sizes = [size for _, size in built.values()]
                experts[INTER] = InterExpert(
                    encoders, sizes, self.fusion_.build(sizes), n_classes,
                    self.fusion_.hidden_size, self.fusion_.dropout,
                )
            else:
                encoder, size = make_encoder(name)
                experts[name] = IntraExpert(name, encoder, size, n_classes)
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
            f"The validation split cannot be stratified: class {rare!r} has "
            f"{counts.min()} sample(s). Using a random split instead.",
            UserWarning, stacklevel=3,
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

    def _fit_stages(self, tensors, y, seed, device):
        n = len(y)
        if self.early_stopping:
            train_idx, valid_idx = self._validation_split(y, seed)
        else:
            train_idx, valid_idx = np.arange(n), None
        train_rows = torch.as_tensor(np.sort(train_idx))
        X_train = {m: t.index_select(0, train_rows) for m, t in tensors.items()}

        self.module_ = None
        module = self._build_module(X_train, len(self.classes_)).to(device)
        self.expert_names_ = module.expert_names

        def dataset(rows):
            index = torch.as_tensor(np.sort(rows))
            return ModalityTensorDataset(
                {m: t.index_select(0, index).to(device) for m, t in tensors.items()},
                torch.as_tensor(y[np.sort(rows)], dtype=torch.long, device=device),
            )

        train_ds = dataset(train_idx)
        valid_ds = dataset(valid_idx) if valid_idx is not None else None
        del X_train
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
        if len(self.expert_names_) > 1 and finetune_epochs > 0:
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
        self.module_ = final_net.module_
        self.module_.eval()

    def _make_net(self, module, criterion, weight, lr, max_epochs, valid_ds,
                  generator, device, stage_callbacks):
        return NeuralNet(
            module=module,
            criterion=criterion,
            criterion__weight=weight,
            optimizer=self.optimizer,
            optimizer__weight_decay=self.weight_decay,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=self.batch_size_,
            iterator_train=BatchSlicer,
            iterator_train__shuffle=True,
            iterator_train__generator=generator,
            iterator_valid=BatchSlicer,
            iterator_valid__batch_size=max(4 * self.batch_size_, 1024),
            train_split=predefined_split(valid_ds) if valid_ds is not None else None,
            callbacks=stage_callbacks + list(self.callbacks or []),
            device=device,
            verbose=int(self.verbose >= 2),
        )

    def _run_stage(self, stage, net, train_ds):
        start = time.perf_counter()
        net.fit(train_ds, y=None)
        if self.verbose:
            history = net.history
            line = f"[I2M2Classifier] {stage}: {len(history)} epochs in " \
                   f"{time.perf_counter() - start:.1f}s, train loss {history[-1, 'train_loss']:.4f}"
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

    def _expert_logits(self, X):
        """Stacked expert logits ``(n_experts, n_samples, n_classes)`` on the CPU."""
        check_is_fitted(self, "module_")
        tensors, _ = self._check_modalities(X, fitting=False)
        net = self.finetune_net_ or self.pretrain_net_
        dataset = ModalityTensorDataset(tensors)
        batches = [yp for yp in net.forward_iter(dataset, training=False, device="cpu")]
        return torch.cat(batches, dim=1)

    def predict_proba(self, X):
        """Class probabilities of the product of experts.

        Parameters
        ----------
        X : dict or ModalityDict
            The modalities seen in ``fit``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to 1.
        """
        return combine(self._expert_logits(X)).exp().numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        return combine(self._expert_logits(X)).numpy()

    def predict(self, X):
        """Predicted class labels, taken from ``classes_``.

        Parameters
        ----------
        X : dict or ModalityDict

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

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
        """
        logits = self._expert_logits(X)
        return {
            name: torch.softmax(logits[i], dim=-1).numpy()
            for i, name in enumerate(self.expert_names_)
        }


def _as_float_tensor(name, value):
    """``(float32 CPU tensor, DataFrame columns or None)`` for one modality."""
    columns = None
    if hasattr(value, "tocsr") or type(value).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"Modality {name!r} is a scipy sparse matrix, which is not supported; "
            "convert it with .toarray()."
        )
    if hasattr(value, "iloc") and hasattr(value, "columns"):
        non_numeric = [c for c, dt in value.dtypes.items()
                       if not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_))]
        if non_numeric:
            raise TypeError(
                f"Modality {name!r} has non-numeric column {non_numeric[0]!r} "
                f"(dtype {value.dtypes[non_numeric[0]]}); encode it first, e.g. with "
                "PerModality({name: ColumnTransformer(...)})."
            )
        columns = np.asarray(value.columns, dtype=object)
        value = value.to_numpy(dtype=np.float32)
    elif hasattr(value, "iloc"):  # pandas Series
        value = value.to_numpy()
    if isinstance(value, torch.Tensor):
        if value.is_complex() or not (value.is_floating_point() or value.dtype in (
                torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
            raise TypeError(f"Modality {name!r} has unsupported dtype {value.dtype}.")
        tensor = value.detach().to("cpu", torch.float32)
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"Modality {name!r} has dtype {array.dtype}; numeric values (float, "
                "int or bool) are required."
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.dim() < 2:
        raise ValueError(
            f"Modality {name!r} must be at least 2-D with samples first, e.g. "
            f"(n_samples, n_features); got shape {tuple(tensor.shape)}. Use "
            "array.reshape(-1, 1) for a single feature."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"Modality {name!r} contains NaN or infinite values.")
    return tensor, columns


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
    return mean.squeeze(0).float(), scale.squeeze(0).float()
