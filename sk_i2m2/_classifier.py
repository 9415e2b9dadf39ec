"""I2M2Classifier: the estimator of class labels and multilabel targets; prediction.

The fit (validate -> build and train -> store) is
:class:`~sk_i2m2._base.I2M2Base`'s; what depends on the target is the
outcome's (:mod:`sk_i2m2.outcomes.classes`, :mod:`sk_i2m2.outcomes.labels`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from ._base import I2M2Base
from .outcomes.classes import ClassesOutcome

__all__ = ["I2M2Classifier"]


class I2M2Classifier(ClassifierMixin, I2M2Base):
    """I2M2 multi-modal classifier: a product of intra- and inter-modality experts.

    Models ``p(y | x_1..x_M) ∝ prod_k q_k(y | x_k) * q_inter(y | x_1..x_M)``
    (Madaan et al., "Jointly Modeling Inter- & Intra-Modality Dependencies
    for Multi-modal Learning", NeurIPS 2024). Each intra expert ``q_k`` is a
    classifier on one modality; the inter expert ``q_inter`` classifies the
    fused features of all modalities. Their logits are summed and
    normalised with one ``log_softmax``, which is exactly the normalised
    product of the experts. With multilabel ``y`` (an ``(n_samples,
    n_labels)`` indicator or soft-target array) each expert gives one logit
    per label and the product is taken per label: a product of Bernoulli
    experts is the sigmoid of their summed logits.

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
        Mini-batch size. ``"auto"`` uses every training row with L-BFGS
        (full-batch training) and otherwise ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small data, 256 on large
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
    optimizer : torch optimizer class or "auto", default="auto"
        ``"auto"``: ``torch.optim.LBFGS`` on fewer than 1000 samples whose
        experts all read vectors (tables, embeddings, frozen features), unless
        ``batch_size``, ``accelerator``, ``augment`` or ``modality_dropout``
        asks for mini-batches or on-disk modalities are read a batch at a
        time; ``torch.optim.AdamW`` otherwise (fitted as ``optimizer_``). L-BFGS
        trains on all training rows at once (``batch_size="auto"``), one
        epoch being one optimizer step of up to 5 iterations; its line
        search sets the step size, so ``lr``, ``finetune_lr`` and
        ``lr_schedule`` do not apply, and a stage also ends once the
        training loss stops changing (converged). A line search needs a
        deterministic loss: the default fusion then has no dropout.
    weight_decay : float or "auto", default="auto"
        Passed to the optimizer; with L-BFGS, which takes none, the loss
        gets an L2 penalty ``weight_decay / 2 * ||W||^2`` on the weight
        matrices of each training expert instead (biases excluded), so that
        a linear expert is the penalised multinomial logistic regression of
        scikit-learn's ``LogisticRegression(C=1 / (n_train * weight_decay))``
        on its standardised features. ``"auto"``: ``1 / n_train`` with
        L-BFGS (``LogisticRegression``'s default ``C=1``), 1e-4 otherwise
        (fitted as ``weight_decay_``).
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
    n_iter_no_change : int or "auto", default="auto"
        Patience, in epochs, of early stopping. ``"auto"``: 3 with L-BFGS
        (an epoch of up to 5 quasi-Newton iterations on all rows), 10
        otherwise (fitted as ``n_iter_no_change_``).
    class_weight : dict, list of dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in ``LogisticRegression``;
        ``"balanced"`` counts each sample with its ``sample_weight``. For
        multilabel ``y``, each label's negatives and positives are weighted:
        ``"balanced"`` per label (``n / (2 * n_pos)`` for its positives,
        ``n / (2 * n_neg)`` for its negatives, as scikit-learn balances
        each output of a multi-output target), or a list of one dict
        ``{0: w_neg, 1: w_pos}`` per label.
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
    augment : dict or None, default=None
        Modality name -> train-time transform: any callable that maps a
        batch tensor ``(batch, *sample_shape)`` to a batch of the same
        shape, e.g. a ``torchvision.transforms.v2.Compose``. It is applied
        to whole training batches on the training device (after they are
        sliced, before the experts' input scaling), never to validation or
        prediction batches. A modality with a frozen encoder that is
        augmented runs that encoder on every training batch instead of
        once per fit.
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
    accelerator : accelerate.Accelerator or None, default=None
        Train each stage data-parallel across the processes of an
        ``accelerate launch`` or ``torchrun`` run (skorch's
        ``AccelerateMixin``): every process fits on the same data, takes
        its share of each epoch's batches, and ends with the same model;
        the device is the accelerator's and ``device`` is not used. Every
        process uses the seed the first one draws from ``random_state``. Use
        the accelerator's ``mixed_precision`` rather than ``mixed_precision``.
        See the user guide's *Scaling out* page.
    warm_start : bool, default=False
        Keep the experts the previous ``fit`` trained in stage 1 and train
        only the experts it did not have; stage 2 and the calibration then
        run as usual. Fit ``dependencies="both"``, then
        ``set_params(dependencies="intra")`` or ``"inter"`` and ``fit``
        again: the baselines cost a stage 2 (``"intra"``) or nothing but
        the calibration (``"inter"``) instead of a new training, and they
        use exactly the experts inside the I2M2 model. An expert is kept
        when its encoders (and, for the inter expert, the fusion) are
        unchanged; other parameters apply to the experts trained anew, as
        for the trees of scikit-learn's forests. The previous fit's seed
        (``seed_``), and so its validation split or folds, is reused: fit
        on the same data, which the kept experts were trained and stopped
        on. A loaded model, or one whose stage 1 was interrupted, has no
        experts to keep.
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
        Class labels; for multilabel ``y``, ``arange(n_labels)`` (as in
        ``MLPClassifier``).
    multilabel_ : bool
        Whether ``y`` was multilabel: each expert is then one Bernoulli
        expert per label, and the product is taken per label.
    modalities_ : list of str
        Modality names seen in ``fit``, in order.
    input_shapes_ : dict
        Modality -> per-sample shape seen in ``fit``.
    feature_names_in_ : dict
        Modality -> column names, for modalities passed as DataFrames.
    encoders_ : dict
        Modality -> the encoder spec that was used.
    frozen_modalities_ : list of str
        Modalities whose encoder is frozen (``spec.frozen``) and not
        augmented: it runs once in front of the experts, over all training
        rows once per ``fit`` and once per prediction, its features shared
        by the intra and inter experts.
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
    optimizer_ : torch optimizer class
        The optimizer both stages trained with (``optimizer="auto"``'s choice).
    batch_size_ : int
        The batch size the stages trained with (all training rows with L-BFGS).
    weight_decay_ : float
        The weight decay (L2 penalty with L-BFGS) the stages trained with.
    n_iter_no_change_ : int
        The early-stopping patience the stages trained with, in epochs.
    pretrained_experts_ : list of dict
        Only after a fit with ``warm_start=True``: per fold model, expert
        name -> the expert as trained in stage 1, for every expert that
        warm-started fits on this data have trained (those of other
        ``dependencies`` included); the next warm-started fit keeps them.
    seed_ : int
        The seed this fit drew from ``random_state`` (validation split or
        folds, initialisation, batch order); ``warm_start`` reuses it.
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

    _outcome_type = ClassesOutcome

    _parameter_constraints = {
        **I2M2Base._parameter_constraints,
        "class_weight": [dict, list, StrOptions({"balanced"}), None],
        "calibration": [StrOptions({"temperature"}), None],
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
        optimizer="auto",
        weight_decay="auto",
        early_stopping=True,
        validation_fraction=0.15,
        cv="auto",
        n_iter_no_change="auto",
        class_weight=None,
        inter_missing="null",
        modality_dropout=0.0,
        augment=None,
        calibration="temperature",
        standardize=True,
        callbacks=None,
        device="auto",
        device_memory_budget=0.5,
        compile=False,
        mixed_precision=False,
        accelerator=None,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            dependencies,
            fusion,
            encoders,
            max_epochs=max_epochs,
            finetune_epochs=finetune_epochs,
            lr=lr,
            finetune_lr=finetune_lr,
            batch_size=batch_size,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            weight_decay=weight_decay,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            cv=cv,
            n_iter_no_change=n_iter_no_change,
            inter_missing=inter_missing,
            modality_dropout=modality_dropout,
            augment=augment,
            standardize=standardize,
            callbacks=callbacks,
            device=device,
            device_memory_budget=device_memory_budget,
            compile=compile,
            mixed_precision=mixed_precision,
            accelerator=accelerator,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )
        self.class_weight = class_weight
        self.calibration = calibration

    # ------------------------------------------------------------------
    # Fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the experts (stage 1) and fine-tune their product (stage 2).

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like (numpy array, torch tensor, pandas
            DataFrame, scipy sparse matrix, ``numpy.memmap``, HDF5 or zarr
            array, or :class:`~sk_i2m2.FileModality`) with samples on the
            first axis. Sparse matrices, arrays on disk and files are read a
            batch at a time.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type; or multilabel targets, one column per
            label (at least 2): 0/1 or bool indicators, or soft targets in
            [0, 1]. Each expert then gives one logit per label, both stages
            train on the per-label binary cross-entropy (see
            :class:`~sk_i2m2.nn.losses.ExpertsBCELoss`), and
            ``calibration="temperature"`` fits one temperature dividing
            every label's summed logit, by the same loss.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weights of the samples (e.g. inverse-probability or
            case-control weights); ``None`` weighs every sample 1. Every loss
            is a weighted mean, ``sum(w * loss) / sum(w)`` (times the class
            weights of ``class_weight``): both training stages, the
            per-expert validation losses of early stopping and the stage-2
            validation loss, and the temperature fit of ``calibration``;
            inner ``cv`` folds and the validation split keep each row's
            weight. Only the ratios of the weights matter. Rows of weight 0
            are dropped before anything else, so fitting with them gives
            exactly the model fitted without them; input standardisation
            uses the remaining rows unweighted. Under scikit-learn's metadata
            routing, request it with ``set_fit_request(sample_weight=True)``.

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
        return self._fit(X, y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        return tags

    # ------------------------------------------------------------------
    # Prediction

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
            Columns in the order of ``classes_``; rows sum to 1. For a
            multilabel model, the probability of each label being positive,
            shape ``(n_samples, n_labels)`` (scikit-learn's multilabel form,
            as ``roc_auc_score`` takes it).
        """
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        # In float64, so that confident rows do not underflow to probability 0.
        logits = self._expert_logits(X)[0].double() / self.temperature_
        return self._fitted_outcome().combine(logits).numpy()

    def predict(self, X):
        """Predicted class labels, taken from ``classes_``.

        Parameters
        ----------
        X : dict or ModalityDict

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            For a multilabel model, 0/1 indicators: 1 where the label's
            probability is above 0.5.
        """
        # predict_proba first: on an unfitted estimator it raises NotFittedError.
        proba = self.predict_proba(X)
        return self._fitted_outcome().decide(proba, self.classes_)

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
            for the inter expert) -> ndarray of shape (n_samples, n_classes);
            for a multilabel model, each expert's probability of each label
            being positive, (n_samples, n_labels).
            Rows of samples an expert cannot see (its modality is missing;
            for the inter expert with ``inter_missing="drop"``, any
            modality is missing) are NaN.
        """
        logits, available = self._expert_logits(X, self._stage_module(stage))
        proba = self._fitted_outcome().expert_proba(logits)
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

        For a multilabel model the product is taken per label and its
        log-odds are the sum of the experts' log-odds
        (:func:`~sk_i2m2.nn.product.combine_labels`): expert ``k``
        contributes its own log-odds of label ``l`` (divided by
        ``temperature_``; 0 when it abstains), and the terms of a sample and
        label sum to ``logit p(y_l = 1 | x_i)``; positive terms argue for
        the label.

        Parameters
        ----------
        X : dict or ModalityDict
            As for :meth:`predict_proba`.

        Returns
        -------
        contributions : pandas.DataFrame of shape (n_samples, n_experts)
            One column per expert, in the order of ``expert_names_``; the
            predicted classes are in ``contributions.attrs["predicted"]``.
            For a multilabel model, shape ``(n_samples, n_labels *
            n_experts)`` with ``(label, expert)`` columns (a ``MultiIndex``)
            and the predicted 0/1 indicators in ``attrs["predicted"]``.
        """
        logits = self._expert_logits(X)[0] / self.temperature_
        return self._fitted_outcome().contributions(logits, self.expert_names_, self.classes_)
