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
from ._docstrings import fill_docstring
from .outcomes.classes import ClassesOutcome

__all__ = ["I2M2Classifier"]


@fill_docstring
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
    %(dependencies)s
    %(fusion)s
    %(encoders)s
    %(max_epochs)s
    %(finetune_epochs)s
    %(lr)s
    %(finetune_lr)s
    %(batch_size)s
    %(lr_schedule)s
    optimizer : torch optimizer class or "auto", default="auto"
        ``"auto"``: ``torch.optim.LBFGS`` on fewer than 1000 samples (2000
        for a multilabel ``y``) whose
        experts all read vectors (tables, embeddings, frozen features), unless
        ``batch_size``, ``accelerator``, ``augment`` or ``modality_dropout``
        asks for mini-batches or on-disk modalities are read a batch at a
        time; ``torch.optim.AdamW`` otherwise (fitted as ``optimizer_``).
        %(lbfgs_optimizer)s
    %(weight_decay)s
    %(early_stopping)s
    %(validation_fraction)s
    %(cv)s
    %(n_iter_no_change)s
    class_weight : dict, list of dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in ``LogisticRegression``;
        ``"balanced"`` counts each sample with its ``sample_weight``. For
        multilabel ``y``, each label's negatives and positives are weighted:
        ``"balanced"`` per label (``n / (2 * n_pos)`` for its positives,
        ``n / (2 * n_neg)`` for its negatives, as scikit-learn balances
        each output of a multi-output target), or a list of one dict
        ``{0: w_neg, 1: w_pos}`` per label.
    %(inter_missing)s
    %(modality_dropout)s
    %(augment)s
    calibration : {"auto", "experts", "temperature"} or None, default="auto"
        Fitted on the held-out rows after stage 2. ``"experts"`` fits one
        weight in [0, 1] per expert (``expert_weights_``): the model is the
        product of the experts' probabilities raised to their weights, still
        a product of experts, in which an expert that does not help on
        held-out rows (a weak modality, an inter expert that repeats what
        the intra experts say) is shrunk rather than multiplied in with full
        weight; predictions may change. For multilabel ``y`` the weights
        are per expert and label: each label's product is its own, and a
        modality that predicts one label is shrunk on the others only. A
        cross-fitted model weighed so keeps its stage-1 experts instead of
        the fine-tuned ones when their weighted product has the lower
        held-out loss (``final_stage_``).
        ``"temperature"`` fits one
        temperature for the whole product (``temperature_``), which leaves
        the arg-max, hence ``predict``, as it is. ``"auto"`` fits expert
        weights when the model is cross-fitted (``cv``: every training row
        is held out once), one temperature on a single validation split.
        One expert gets a temperature either way. Needs held-out rows: with
        ``early_stopping=False`` nothing is fitted. ``None`` keeps the raw
        product.
    %(standardize)s
    %(callbacks)s
    %(device)s
    %(device_memory_budget)s
    %(compile)s
    %(mixed_precision)s
    %(accelerator)s
    %(warm_start)s
    %(random_state)s
    %(verbose)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; for multilabel ``y``, ``arange(n_labels)`` (as in
        ``MLPClassifier``).
    multilabel_ : bool
        Whether ``y`` was multilabel: each expert is then one Bernoulli
        expert per label, and the product is taken per label.
    temperature_ : float
        Temperature dividing the summed expert logits in ``predict_proba``
        (1.0 unless ``calibration`` fitted one).
    expert_weights_ : dict
        Expert name -> the weight its logits were multiplied by in
        ``module_`` (``calibration``'s expert weights; 1.0 when it fitted
        none); for multilabel ``y``, an array of shape ``(n_labels,)``,
        one weight per label.
    calibration_loss_ : float or None
        The stage-2 loss (cross-entropy) of the calibrated product on the
        held-out rows, pooled over the folds; ``None`` without held-out
        rows. A cross-fitted model keeps the stage whose product has the
        lower one (``final_stage_``).
    module_ : I2M2Module or FoldEnsemble
        The fitted torch module used for prediction.
    %(fitted_attributes)s

    See Also
    --------
    I2M2Regressor : The product of Gaussian experts, for continuous targets.
    I2M2SurvivalAnalysis : The product of Cox experts, for time-to-event targets.

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
        "calibration": [StrOptions({"auto", "experts", "temperature"}), None],
    }

    # scikit-learn reads the parameters from this signature (``get_params``
    # takes no ``**kwargs``), so it lists I2M2Base's again with ``class_weight``.
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
        calibration="auto",
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
        # I2M2Base stores the shared arguments, each as given.
        super().__init__(**I2M2Base.shared_arguments(locals()))
        self.class_weight = class_weight

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
            ``calibration`` fits its temperature or expert weights by the
            same loss (each expert's weight scales its log-odds of every
            label).
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weights of the samples (e.g. inverse-probability or
            case-control weights); ``None`` weighs every sample 1. Every loss
            is a weighted mean, ``sum(w * loss) / sum(w)`` (times the class
            weights of ``class_weight``): both training stages, the
            per-expert validation losses of early stopping and the stage-2
            validation loss, and the fit of ``calibration``;
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
