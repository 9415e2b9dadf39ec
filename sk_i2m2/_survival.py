"""I2M2SurvivalAnalysis: the estimator of time-to-event targets; risk and survival prediction.

What depends on the target is the outcome's (:mod:`sk_i2m2.outcomes.cox`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import StrOptions

from ._base import I2M2Base
from ._docstrings import fill_docstring
from .nn.cox import combine_log_risk
from .outcomes.cox import CoxOutcome, check_survival_target, import_sksurv

__all__ = ["I2M2SurvivalAnalysis"]


@fill_docstring
class I2M2SurvivalAnalysis(I2M2Base):
    """I2M2 for time-to-event outcomes: a product of Cox intra- and inter-modality experts.

    The survival counterpart of :class:`~sk_i2m2.I2M2Classifier`, following
    scikit-survival's conventions (it sits beside
    ``sksurv.linear_model.CoxPHSurvivalAnalysis``). Each expert predicts
    one log-risk: an intra expert ``r_k(x_k)`` from one modality, the inter
    expert ``r_inter(x_1..x_M)`` from the fused features of all of them.
    The model's hazard is the product of the experts' hazards,

        h(t | x) = h_0(t) * exp(r_1(x_1) + ... + r_M(x_M) + r_inter(x)),

    a Cox model whose log-risk is the sum of the experts' log-risks; an
    expert that cannot see a sample (its modality is missing) adds 0, as
    in classification.

    Training runs in the classifier's two stages, each a skorch net
    (:class:`~sk_i2m2.training.cox_net.StageNetSurvival`): stage 1 trains
    every expert alone on its Cox negative partial log-likelihood, stage 2
    fine-tunes the product on the partial likelihood of the summed log-risk
    at ``finetune_lr``. The baseline cumulative hazard ``H_0`` is Breslow's
    estimate on the training rows.

    The risk sets of the partial likelihood are those of the training
    batch: a mini-batch holds only part of each risk set, which biases the
    loss. ``batch_size="auto"`` therefore trains full-batch (one step per
    epoch) on fewer than 1000 training rows, the common case of clinical
    cohorts, which is why the default ``lr`` is 30 times the classifier's;
    on more rows it takes the classifier's mini-batches, which deep experts
    need (see the user guide's *Survival outcomes* page).

    Parameters
    ----------
    %(dependencies)s
    %(fusion)s
    %(encoders)s
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times in the partial likelihood: Efron's
        approximation, or Breslow's (scikit-survival's ``CoxPHSurvivalAnalysis``
        offers both).
    %(max_epochs)s
    %(finetune_epochs)s
    lr : float, default=3e-2
        Learning rate of stage 1; full-batch training takes one step per
        epoch.
    %(finetune_lr)s
    batch_size : int or "auto", default="auto"
        Mini-batch size. ``"auto"``: the whole training split when it has
        fewer than 1000 rows, else ``n_train // 16`` clipped to [16, 256].
    %(lr_schedule)s
    optimizer : torch optimizer class or "auto", default=torch.optim.AdamW
        The optimizer of both stages (fitted as ``optimizer_``); ``"auto"``
        chooses as :class:`~sk_i2m2.I2M2Classifier` does.
        %(lbfgs_optimizer)s
    %(weight_decay)s
    %(early_stopping)s
    %(validation_fraction)s
    %(cv)s
    %(n_iter_no_change)s
    %(inter_missing)s
    %(modality_dropout)s
    %(augment)s
    calibration : {"temperature"} or None, default="temperature"
        ``"temperature"`` multiplies the summed log-risk by one factor
        fitted on the held-out rows (maximising their partial likelihood):
        the experts, each trained alone first, may together overstate the
        spread of risks. It changes the survival functions, not the ranking
        of ``predict``. ``None`` keeps the factor at 1.
    %(standardize)s
    %(callbacks)s
    %(device)s
    %(device_memory_budget)s
    %(compile)s
    %(mixed_precision)s
    accelerator : None, default=None
        Data-parallel training is not offered: each process would hold
        only part of each risk set.
    %(warm_start)s
    %(random_state)s
    %(verbose)s

    Attributes
    ----------
    event_field_, time_field_ : str
        Names of the event and time fields of the ``y`` passed to ``fit``.
    unique_times_ : ndarray of shape (n_times,)
        Distinct times (of events and of censoring) of the training rows.
    cum_baseline_hazard_ : ndarray of shape (n_times,)
        Breslow's baseline cumulative hazard at ``unique_times_``.
    temperature_ : float
        Factor of the summed log-risk (1.0 without calibration).
    module_ : I2M2Module or CoxFoldEnsemble
        The fitted torch module used for prediction; its experts output
        log-risks.
    %(fitted_attributes)s

    See Also
    --------
    I2M2Classifier : The product of experts for class labels.
    I2M2Regressor : The product of Gaussian experts, for continuous targets.

    Notes
    -----
    Anything that scores or returns scikit-survival objects (``score``,
    ``predict_survival_function`` and ``predict_cumulative_hazard_function``
    without ``return_array=True``) needs scikit-survival, the ``survival``
    extra: ``pip install 'sk-i2m2[survival]'``. Fitting does not.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_i2m2 import I2M2SurvivalAnalysis
    >>> rng = np.random.default_rng(0)
    >>> X = {"a": rng.normal(size=(100, 3)), "b": rng.normal(size=(100, 2))}
    >>> time = rng.exponential(np.exp(-X["a"][:, 0]))
    >>> y = np.array(list(zip(time < 1.5, np.minimum(time, 1.5))),
    ...              dtype=[("event", bool), ("time", float)])
    >>> model = I2M2SurvivalAnalysis(max_epochs=5, random_state=0).fit(X, y)
    >>> model.predict(X).shape
    (100,)
    >>> sorted(model.expert_predict(X))
    ['a', 'b', 'inter']
    """

    _outcome_type = CoxOutcome

    _parameter_constraints = {
        **I2M2Base._parameter_constraints,
        "ties": [StrOptions({"efron", "breslow"})],
        "accelerator": [None],
    }

    # scikit-learn reads the parameters from this signature (``get_params``
    # takes no ``**kwargs``), so it lists I2M2Base's again with ``ties`` and
    # the defaults of full-batch Cox training (``lr``, ``optimizer``).
    def __init__(
        self,
        dependencies="both",
        fusion="concat",
        encoders=None,
        *,
        ties="efron",
        max_epochs=100,
        finetune_epochs=None,
        lr=3e-2,
        finetune_lr=None,
        batch_size="auto",
        lr_schedule="auto",
        optimizer=torch.optim.AdamW,
        weight_decay="auto",
        early_stopping=True,
        validation_fraction=0.15,
        cv="auto",
        n_iter_no_change="auto",
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
        # I2M2Base stores the shared arguments, each as given.
        super().__init__(**I2M2Base.shared_arguments(locals()))
        self.ties = ties

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------
    # Fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the Cox experts (stage 1) and fine-tune their product (stage 2).

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like with samples on the first axis, as
            for :meth:`I2M2Classifier.fit <sk_i2m2.I2M2Classifier.fit>`.
        y : structured array of shape (n_samples,)
            The event indicator (boolean) and the time of the event or of
            censoring, as ``sksurv.util.Surv.from_arrays(event, time)``
            builds it (any field names; the boolean field is the event).
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weights of the samples, in every partial
            likelihood (each sample's event term and its share of the risk
            sets), the temperature and the Breslow baseline; rows of weight
            0 are dropped first.

        Returns
        -------
        self : I2M2SurvivalAnalysis

        Raises
        ------
        TypeError, ValueError
            For invalid inputs or parameters (e.g. a target that is not a
            structured array, negative times, no events), before any training.
        FloatingPointError
            When a training loss becomes NaN or infinite.
        """
        return self._fit(X, y, sample_weight)

    # ------------------------------------------------------------------
    # Prediction

    def _scaled_log_risk(self, outputs, available):
        return combine_log_risk(outputs.double(), available)[:, 0].numpy() * self.temperature_

    def predict(self, X):
        """Risk score of each sample: the log-risk of the product of experts.

        Higher means an earlier event. It is the sum of the experts'
        log-risks times ``temperature_``, the log of the factor by which
        the sample's hazard multiplies the baseline hazard.

        Parameters
        ----------
        X : dict or ModalityDict
            The modalities seen in ``fit``; any may be left out or missing
            in some samples (all-NaN rows), as long as each sample has one.

        Returns
        -------
        risk_score : ndarray of shape (n_samples,)
        """
        return self._scaled_log_risk(*self._expert_logits(X))

    def score(self, X, y):
        """Harrell's concordance index of :meth:`predict` on ``X`` and ``y``.

        Parameters
        ----------
        X : dict or ModalityDict
        y : structured array of shape (n_samples,)
            As for :meth:`fit`.

        Returns
        -------
        cindex : float
            ``sksurv.metrics.concordance_index_censored``'s first value.
        """
        metrics = import_sksurv("metrics", "I2M2SurvivalAnalysis.score")
        event, time, _, _ = check_survival_target(y)
        return metrics.concordance_index_censored(event, time, self.predict(X))[0]

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Cumulative hazard ``H_0(t) * exp(risk)`` of each sample.

        Parameters
        ----------
        X : dict or ModalityDict
        return_array : bool, default=False
            Return an array of the functions' values at ``unique_times_``
            instead of ``sksurv.functions.StepFunction`` objects (which need
            scikit-survival).

        Returns
        -------
        cum_hazard : ndarray
            Of ``StepFunction`` objects, shape (n_samples,), or of floats,
            shape (n_samples, n_times).
        """
        risk = np.exp(self.predict(X))
        if return_array:
            return risk[:, None] * self.cum_baseline_hazard_
        functions = import_sksurv("functions", "predict_cumulative_hazard_function")
        return np.array(
            [
                functions.StepFunction(self.unique_times_, self.cum_baseline_hazard_, a=r)
                for r in risk
            ]
        )

    def predict_survival_function(self, X, return_array=False):
        """Survival function ``exp(-H_0(t) * exp(risk))`` of each sample.

        Parameters
        ----------
        X : dict or ModalityDict
        return_array : bool, default=False
            Return an array of the functions' values at ``unique_times_``
            instead of ``sksurv.functions.StepFunction`` objects (which need
            scikit-survival).

        Returns
        -------
        survival : ndarray
            Of ``StepFunction`` objects, shape (n_samples,), or of floats in
            [0, 1], non-increasing in time, shape (n_samples, n_times).
        """
        survival = np.exp(-self.predict_cumulative_hazard_function(X, return_array=True))
        if return_array:
            return survival
        functions = import_sksurv("functions", "predict_survival_function")
        return np.array([functions.StepFunction(self.unique_times_, s) for s in survival])

    def expert_predict(self, X, *, stage="final"):
        """Each expert's own log-risk.

        Parameters
        ----------
        X : dict or ModalityDict
        stage : {"final", "pretrain"}, default="final"
            ``"final"``: the experts of the fitted model (after stage 2);
            ``"pretrain"``: the experts as trained on their own in stage 1
            (needs ``pretrain_net_``, so not on a loaded model).

        Returns
        -------
        log_risk : dict
            Expert name (a modality name for an intra expert, ``"inter"``
            for the inter expert) -> ndarray of shape (n_samples,), not
            scaled by ``temperature_``; NaN for the samples an expert cannot see.
        """
        outputs, available = self._expert_logits(X, self._stage_module(stage))
        log_risk = outputs[..., 0].double()
        if available is not None:
            log_risk = log_risk.masked_fill(~available, float("nan"))
        return {name: log_risk[i].numpy() for i, name in enumerate(self.expert_names_)}

    def modality_contributions(self, X):
        """Each expert's term in the log-hazard of each sample.

        The product of hazards adds the experts' log-risks, so a sample's
        risk score decomposes exactly: expert ``k`` contributes its log-risk
        times ``temperature_`` (0 when it abstains), and the terms of a
        sample sum to :meth:`predict`. A positive term raises the hazard.

        Parameters
        ----------
        X : dict or ModalityDict

        Returns
        -------
        contributions : pandas.DataFrame of shape (n_samples, n_experts)
            One column per expert, in the order of ``expert_names_``; the
            risk scores are in ``contributions.attrs["predicted"]``.
        """
        outputs, available = self._expert_logits(X)
        terms = outputs[..., 0].double() * self.temperature_
        if available is not None:
            terms = terms.masked_fill(~available, 0.0)
        frame = pd.DataFrame(terms.T.numpy(), columns=list(self.expert_names_))
        frame.attrs["predicted"] = terms.sum(0).numpy()
        return frame
