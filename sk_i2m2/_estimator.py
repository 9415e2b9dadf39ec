"""I2M2Classifier: fit -> validate -> build -> run the stages -> store; prediction."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._allocator import cpu_allocator
from ._device import cudnn_autotune, data_device, resolve_device, to_channels_last
from ._inference import expert_logits
from ._missing import check_fit_options, check_samples_have_an_expert, warn_untrained_null
from ._persistence import SaveLoadMixin
from ._sizing import auto_batch_size, auto_n_folds, is_small_cohort
from ._validation import check_modalities, check_target
from .encoders import nested_encoder_params, resolve_encoders, set_nested_encoder_params
from .fusion import FusionSpec, resolve_fusion
from .nn.build import build_module_for
from .nn.ensemble import FoldEnsemble
from .nn.experts import PRESENT
from .nn.product import combine, contributions
from .training.calibration import fit_temperature
from .training.callbacks import check_callbacks
from .training.stages import (
    TrainingPlan,
    class_weight_tensor,
    run_stages,
    split_datasets,
    validation_split,
)

__all__ = ["I2M2Classifier"]


class I2M2Classifier(SaveLoadMixin, ClassifierMixin, BaseEstimator):
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
        (see :func:`~sk_i2m2.encoders.infer_encoder_kind`); on fewer than
        1000 samples a vector modality's default is a linear expert
        (``MLPEncoder(hidden_sizes=())``) and ``fusion="concat"`` a narrow
        one (``ConcatFusion(hidden_size=16)``). Spec hyperparameters are
        reachable as ``encoders__<modality>__<param>``.
    max_epochs : int, default=100
        Maximum epochs of stage 1 (pretraining the experts).
    finetune_epochs : int or None, default=None
        Maximum epochs of stage 2 (joint fine-tuning); ``None`` means
        ``max_epochs``, 0 skips stage 2 (the product of the independently
        trained experts is used as is).
    lr : float, default=1e-3
        Learning rate of stage 1 (at batches of up to 256; see
        ``lr_schedule``).
    finetune_lr : float or None, default=None
        Learning rate of stage 2; ``None`` means ``lr / 10``.
    batch_size : int or "auto", default="auto"
        Mini-batch size. ``"auto"`` uses ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small cohorts, 256 on large
        data sets.
    lr_schedule : {"auto", "constant"}, default="auto"
        Learning rate over the steps of each stage. ``"constant"`` trains at
        ``lr`` (``finetune_lr`` in stage 2) throughout. ``"auto"`` does the
        same for batches of up to 256; a larger batch, which takes fewer
        optimizer steps per epoch, trains at ``k`` times the rate, ``k =
        min(batch_size, n_train) / 256``, reached by a linear warm-up from
        the unscaled rate over the first 5 epochs (a tenth of the stage's
        epochs if fewer), so that it makes the progress per epoch of a
        batch of 256 (:class:`~sk_i2m2.callbacks.LargeBatchLR`). A stage
        given an ``LRScheduler`` in ``callbacks`` runs that scheduler alone,
        from the unscaled rate.
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
        and ``cv`` gives no folds (at least one sample per class).
    cv : int, "auto" or None, default="auto"
        Inner cross-fitting for early stopping (with ``early_stopping=True``):
        with ``k`` folds, one model is trained per fold, early-stopped and
        calibrated on its held-out fold, and the fitted model is their
        ensemble (each expert the geometric mean of its ``k`` versions, so
        still a product of experts), which uses every row for training and
        every row for stopping. It costs about ``k`` fits. ``"auto"``: 5
        folds on fewer than 1000 samples, where a single validation split is
        too small to stop on, else ``None``: one split of
        ``validation_fraction``.
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
    calibration : {"temperature"} or None, default="temperature"
        ``"temperature"`` fits one temperature for the product of experts
        on the validation rows after stage 2 (temperature scaling), so that
        ``predict_proba`` is calibrated; the arg-max, hence ``predict``, does
        not change. Needs held-out rows: with ``early_stopping=False`` the
        temperature stays 1. ``None`` keeps the raw product.
    standardize : bool, default=True
        Standardise inputs inside the model with statistics of the training
        rows: per feature for vectors and sequences, per channel for images
        and volumes (a constant feature is only centred). Modalities with a
        user ``torch.nn.Module`` encoder are left alone unless its
        :class:`~sk_i2m2.encoders.ModuleEncoder` says otherwise.
    callbacks : list, dict or None, default=None
        skorch callbacks (or ``(name, callback)`` pairs) for the stage nets:
        a list applies to both stages, a dict ``{"pretrain": [...],
        "finetune": [...]}`` to the stages it names. Each stage gets its own
        copy of each callback, so stock skorch callbacks (``EpochScoring``,
        ``ProgressBar``, ``Checkpoint`` with ``LoadInitState``,
        ``LRScheduler``, ``GradientNormClipping``, loggers) work in either
        stage; checkpoint files are prefixed with the stage name.
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
        0 is silent; 1 shows a progress bar per stage (epochs, losses, best
        epoch) in a terminal or notebook and prints one summary line per
        stage; 2 also prints skorch's per-epoch table.

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
        that of the first fold with ``cv`` folds; ``None`` in a model
        restored by :meth:`load`.
    finetune_net_ : skorch.NeuralNet or None
        Stage-2 net, or ``None`` when there is no stage 2 (a single
        expert, ``finetune_epochs=0``, an interrupted stage 1, or a model
        restored by :meth:`load`); that of the first fold with ``cv`` folds.
    fold_nets_ : list of tuple or None
        With ``cv`` folds, ``(pretrain_net, finetune_net)`` of each fold.
    n_folds_ : int
        Number of fold models in ``module_`` (1 without cross-fitting).
    interrupted_stage_ : str or None
        ``"pretrain"`` or ``"finetune"`` when a ``KeyboardInterrupt``
        stopped training in that stage (the model then holds the best
        weights so far and later stages were skipped), else ``None``.
    temperature_ : float
        Temperature dividing the summed expert logits in ``predict_proba``
        (1.0 without calibration).
    module_ : I2M2Module or FoldEnsemble
        The fitted torch module used for prediction.
    device_ : torch.device
        Device the model was trained on.

    Notes
    -----
    A sample misses a modality when all its values in it are NaN or, at
    prediction, when the modality is left out of ``X``; the product then
    runs over the experts that see the sample (see the user guide's
    *Missing modalities* page).

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
        "lr_schedule": [StrOptions({"auto", "constant"})],
        "optimizer": [type],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "cv": [Interval(numbers.Integral, 2, None, closed="left"), StrOptions({"auto"}), None],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "inter_missing": [StrOptions({"null", "drop"})],
        "modality_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "calibration": [StrOptions({"temperature"}), None],
        "standardize": ["boolean"],
        "callbacks": [list, dict, None],
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
        lr_schedule="auto",
        optimizer=torch.optim.AdamW,
        weight_decay=1e-4,
        early_stopping=True,
        validation_fraction=0.15,
        cv="auto",
        n_iter_no_change=10,
        class_weight=None,
        inter_missing="null",
        modality_dropout=0.0,
        calibration="temperature",
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
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.cv = cv
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.inter_missing = inter_missing
        self.modality_dropout = modality_dropout
        self.calibration = calibration
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
        if deep:
            params.update(nested_encoder_params(self.encoders))
        return params

    def set_params(self, **params):
        nested = {k: params.pop(k) for k in list(params) if k.startswith("encoders__")}
        super().set_params(**params)
        if nested:
            self.encoders = set_nested_encoder_params(self.encoders, nested)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        tags.input_tags.sparse = True  # densified by _validation.check_modalities
        tags.non_deterministic = False
        return tags

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
        tensors, columns, present = check_modalities(X)
        classes, y_encoded = check_target(y, len(next(iter(tensors.values()))))
        check_fit_options(self.inter_missing, self.modality_dropout)
        check_samples_have_an_expert(present, list(tensors), self.dependencies, self.inter_missing)
        check_callbacks(self.callbacks)
        small = is_small_cohort(len(y_encoded))
        n_folds = auto_n_folds(y_encoded, self.cv) if self.early_stopping else None
        specs = resolve_encoders(
            self.encoders, {m: t.shape[1:] for m, t in tensors.items()}, small_cohort=small
        )
        fusion = resolve_fusion(self.fusion, small_cohort=small)
        device = resolve_device(self.device)
        class_weight = class_weight_tensor(self.class_weight, classes, y_encoded)

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
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            fork_devices = [device.index or 0] if device.type == "cuda" else []
            with (
                torch.random.fork_rng(devices=fork_devices),
                cudnn_autotune(device.type == "cuda"),
                cpu_allocator(device),
            ):
                torch.manual_seed(seed)
                self._train(tensors, present, y_encoded, seed, class_weight, n_folds)
        except BaseException:
            _restore_fitted_state(self, previous)
            raise
        return self

    def _train(self, tensors, present, y, seed, class_weight, n_folds):
        """Split, train the experts on each split, keep the final (calibrated) module."""
        if present is not None:
            # The presence mask travels with the batches, like a modality.
            tensors = {**tensors, PRESENT: present}
        where = data_device(tensors, self.device_, self.device_memory_budget)
        if n_folds:
            folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
            splits = list(folds.split(np.zeros(len(y)), y))
        elif self.early_stopping:
            splits = [validation_split(y, self.classes_, self.validation_fraction, seed)]
        else:
            splits = [(np.arange(len(y)), None)]
        self.batch_size_ = (
            auto_batch_size(len(splits[0][0]))
            if self.batch_size == "auto"
            else int(self.batch_size)
        )
        self.module_ = None
        modules, nets, held_out = [], [], []
        for train_rows, valid_rows in splits:
            module, stage_nets, valid_ds = self._fit_split(
                tensors, y, train_rows, valid_rows, where, seed, class_weight
            )
            modules.append(module)
            nets.append(stage_nets)
            if valid_ds is not None:
                held_out.append(
                    (
                        expert_logits(
                            module,
                            valid_ds.X,
                            device=self.device_,
                            batch_size=max(4 * self.batch_size_, 1024),
                        ),
                        valid_ds.y.cpu(),
                    )
                )
            if self.interrupted_stage_ is not None:
                break
        self.pretrain_net_, self.finetune_net_ = nets[0]
        self.fold_nets_ = nets if n_folds else None
        self.n_folds_ = len(modules)
        self.module_ = modules[0] if len(modules) == 1 else FoldEnsemble(modules).eval()
        self.temperature_ = 1.0
        if self.calibration == "temperature" and held_out:
            logits = torch.cat([lg.log_softmax(-1).sum(0) for lg, _ in held_out])
            targets = torch.cat([target for _, target in held_out])
            self.temperature_ = fit_temperature(logits, targets, class_weight)

    def _fit_split(self, tensors, y, train_rows, valid_rows, where, seed, class_weight):
        """Build and train one model; return it, its stage nets and its validation data."""
        train_ds, valid_ds = split_datasets(tensors, y, train_rows, valid_rows, where)
        # Input statistics are computed where the data is (on the GPU when it fits).
        module = build_module_for(
            self,
            {m: t for m, t in train_ds.X.items() if m != PRESENT},
            present=train_ds.X.get(PRESENT),
        ).to(self.device_)
        if self.device_.type == "cuda":
            to_channels_last(module)
        self.expert_names_ = module.expert_names
        plan = TrainingPlan.from_params(
            self.get_params(deep=False),
            batch_size=self.batch_size_,
            device=self.device_,
            seed=seed,
            n_classes=len(self.classes_),
            class_weight=class_weight,
        )
        pretrain_net, finetune_net = run_stages(module, train_ds, valid_ds, plan)
        self.interrupted_stage_ = plan.interrupted_stage
        final_net = finetune_net or pretrain_net
        # skorch wraps the module when compile=True; keep the plain module.
        module = getattr(final_net.module_, "_orig_mod", final_net.module_).eval()
        return module, (pretrain_net, finetune_net), valid_ds

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
        tensors, _, present = check_modalities(X, fitted=self)
        available = None
        if present is not None:
            check_samples_have_an_expert(
                present, self.modalities_, self.dependencies, self.inter_missing
            )
            warn_untrained_null(self, present)
            tensors[PRESENT] = present
            available = module.availability({PRESENT: present})
        # The module alone, not a skorch net: a model restored by ``load`` has no nets.
        logits = expert_logits(
            module,
            tensors,
            device=self.device_,
            batch_size=max(4 * self.batch_size_, 1024),
            memory_budget=self.device_memory_budget,
            mixed_precision=self.mixed_precision,
        )
        return logits, available

    def predict_proba(self, X):
        """Class probabilities of the product of experts (at ``temperature_``).

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
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        # In float64, so that confident rows do not underflow to probability 0.
        return combine(self._expert_logits(X)[0].double() / self.temperature_).numpy()

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

    def expert_proba(self, X, *, stage="final"):
        """Each expert's own class probabilities.

        Parameters
        ----------
        X : dict or ModalityDict
        stage : {"final", "pretrain"}, default="final"
            ``"final"``: the experts of the fitted model (after stage 2);
            ``"pretrain"``: the experts as trained on their own in stage 1
            (needs ``pretrain_net_``, so not on a loaded model).

        Returns
        -------
        proba : dict
            Expert name (a modality name for an intra expert, ``"inter"``
            for the inter expert) -> ndarray of shape (n_samples, n_classes).
            Rows of samples an expert cannot see (its modality is missing;
            for the inter expert with ``inter_missing="drop"``, any
            modality is missing) are NaN.
        """
        if stage not in ("final", "pretrain"):
            raise ValueError(f"stage must be 'final' or 'pretrain'; got {stage!r}.")
        module = None
        if stage == "pretrain":
            check_is_fitted(self, "module_")
            if self.pretrain_net_ is None:
                raise ValueError(
                    "stage='pretrain' needs pretrain_net_, which a loaded model does not have."
                )
            module = self.pretrain_net_.module_
            if self.fold_nets_:
                module = FoldEnsemble([pretrain.module_ for pretrain, _ in self.fold_nets_])
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
        terms, predicted = contributions(self._expert_logits(X)[0] / self.temperature_)
        frame = pd.DataFrame(terms.T.numpy(), columns=list(self.expert_names_))
        frame.attrs["predicted"] = self.classes_[predicted.numpy()]
        return frame


def _fitted_state(estimator):
    """The fitted attributes (public names ending in ``_``) of ``estimator``."""
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}


def _restore_fitted_state(estimator, state):
    for key in _fitted_state(estimator):
        delattr(estimator, key)
    vars(estimator).update(state)
