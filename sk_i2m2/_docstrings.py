"""The numpydoc text that the estimators share, written once.

The estimators' class docstrings hold a line ``%(name)s`` wherever they
share an entry of their *Parameters* or *Attributes* section;
:func:`fill_docstring` replaces each such line by the text below, indented
as the line. An estimator writes its own entry where a parameter means
something of its own (``optimizer``'s ``"auto"``, ``calibration``, a default
of its own) and may take a shared passage into it the same way. So
``help()`` and the API pages show every entry in full, and each shared
text is written here only (skorch builds ``NeuralNetClassifier``'s
docstring from ``NeuralNet``'s in the same spirit).

Entries say what a parameter does and its default; measured figures and
the stories behind defaults belong in the user guide and on the
benchmarks page.
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["ATTRIBUTES", "PARAMETERS", "PASSAGES", "fill_docstring"]


def _entries(section):
    """Name -> entry, from the entries of a numpydoc section (each starts unindented)."""
    entries = re.split(r"\n(?=\S)", section.strip("\n"))
    return {entry.split(" :", 1)[0]: entry for entry in entries}


# Parameters that every estimator documents alike, in the order of the signatures.
PARAMETERS = _entries("""\
dependencies : {"both", "intra", "inter"}, default="both"
    Which dependencies to model: ``"both"`` is I2M2 (every intra expert
    and the inter expert); ``"intra"`` the product of the intra experts
    only; ``"inter"`` the inter expert only. With a single modality all
    three are one unimodal model.
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
    1000 samples (2000 for a multilabel ``y``) a vector modality's
    default is a linear expert
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
    [16, 256]: about 16 steps per epoch, 256 rows on large data sets;
    on fewer than 256 training rows 64 (all rows if fewer), trained at a
    scaled learning rate (``lr_schedule``).
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
    from the unscaled rate. On fewer than 256 training rows the batches
    of ``batch_size="auto"`` (64 rows, where the rate is tuned for 16)
    train at ``k = min(64, n_train) / 16`` times the rate from the first
    step: four times fewer steps per epoch, fits about 2.5 times faster
    at the same accuracy on small image cohorts.
weight_decay : float or "auto", default="auto"
    Passed to the optimizer; with L-BFGS, which takes none, the loss
    gets an L2 penalty ``weight_decay / 2 * ||W||^2`` on the weight
    matrices of each training expert instead (biases excluded), so that
    a linear classification expert is the penalised multinomial
    logistic regression of scikit-learn's ``LogisticRegression(C=1 /
    (n_train * weight_decay))`` on its standardised features.
    ``"auto"``: ``1 / n_train`` with L-BFGS (``LogisticRegression``'s
    default ``C=1``), 1e-4 otherwise (fitted as ``weight_decay_``). On
    a small cohort (below 1000 samples, 2000 for a multilabel ``y``;
    ``optimizer="auto"``) each
    linear expert's L2 coefficient is chosen by the inner folds instead,
    as ``LogisticRegressionCV`` chooses ``C``: among ``C`` of 0.01,
    0.1, 1 and 10, the one of lowest pooled held-out loss (fitted as
    ``expert_weight_decay_``; an explicit value is used as is).
early_stopping : bool, default=True
    Hold out validation rows (the ``cv`` folds, or one split of
    ``validation_fraction``), stop a stage after ``n_iter_no_change``
    epochs without improvement of the validation loss, and restore the
    best epoch. ``False`` trains every stage for its full number of
    epochs on all data.
validation_fraction : float, default=0.15
    Share of the training data held out when ``early_stopping=True``
    and ``cv`` gives no folds. The split is stratified on the classes
    (at least one sample per class), or on the event indicator of a
    survival target; a regression target is split at random.
cv : int, "auto" or None, default="auto"
    Inner cross-fitting for early stopping (with ``early_stopping=True``):
    with ``k`` folds (stratified as ``validation_fraction`` is), one
    model is trained per fold, early-stopped and calibrated on its
    held-out fold, and the fitted model is their ensemble (each expert
    the geometric mean of its ``k`` versions, an expert of the same
    kind, so still a product of experts), which uses every row for
    training and every row for stopping. It costs about ``k`` fits.
    ``"auto"``: 5 folds on fewer than 1000 samples (2000 for a
    multilabel ``y``), where a single
    validation split is too small to stop on (fewer folds when a class,
    the events or the censored samples number fewer than 5), else
    ``None``: one split of ``validation_fraction``.
n_iter_no_change : int or "auto", default="auto"
    Patience, in epochs, of early stopping. ``"auto"``: with L-BFGS (an
    epoch of up to 5 quasi-Newton iterations on all rows) 1 for class
    labels and 3 for other targets (multilabel, survival), with a
    mini-batch optimizer 10 (fitted as ``n_iter_no_change_``). In stage
    1 an expert's count restarts only when its held-out loss falls
    clearly below its best (a classifier's log loss by more than 1 %);
    its weights are kept at its lowest loss all the same.
inter_missing : {"null", "drop"}, default="null"
    How the inter expert handles a sample that misses a modality (see
    the user guide's *Missing modalities* page): ``"null"`` puts a
    learned null embedding in place of the missing modality's features;
    ``"drop"`` leaves the inter expert out of that sample's product.
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
standardize : bool, default=True
    Standardise inputs inside the model with statistics of the training
    rows: per feature for vectors and sequences, per channel for images
    and volumes (a constant feature is only centred). Modalities with a
    user ``torch.nn.Module`` encoder are left alone unless its
    :class:`~sk_i2m2.encoders.ModuleEncoder` says otherwise.
callbacks : list, dict or None, default=None
    Callbacks of the stage nets: skorch callbacks, or ``(name,
    callback)`` pairs. A list applies to both stages, a dict
    ``{"pretrain": [...], "finetune": [...]}`` to the stages it names.
    Each stage gets its own copy of each callback, so stock skorch
    callbacks (``EpochScoring``, ``ProgressBar``, ``Checkpoint`` with
    ``LoadInitState``, ``LRScheduler``, ``GradientNormClipping``,
    loggers) work in either stage; checkpoint files are prefixed with
    the stage name.
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
    Run forward passes under bfloat16 autocast (see the user guide's
    *Training* page).
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
""")

# Passages of entries that an estimator writes itself, its default or its
# outcome being its own.
PASSAGES = {
    "lbfgs_optimizer": """\
An L-BFGS class (``torch.optim.LBFGS``) trains on all training rows
at once (``batch_size="auto"``), one epoch being one optimizer step
of up to 5 iterations; its line search sets the step size, so
``lr``, ``finetune_lr`` and ``lr_schedule`` do not apply, and a
stage also ends once the training loss stops changing (converged).
A line search needs a deterministic loss: the default fusion then
has no dropout.""",
}

# Fitted attributes that every estimator documents alike.
ATTRIBUTES = _entries("""\
modalities_ : list of str
    Modality names seen in ``fit``, in order.
input_shapes_ : dict
    Modality -> per-sample shape seen in ``fit``.
feature_names_in_ : dict
    Modality -> column names, for modalities passed as DataFrames.
encoders_ : dict
    Modality -> the encoder spec that was used.
fusion_ : FusionSpec
    The fusion spec of the inter expert that was used.
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
final_stage_ : {"pretrain", "finetune"}
    The stage whose experts ``module_`` holds. A cross-fitted classifier
    calibrated by expert weights (the default) whose folds all ran stage
    2 keeps the experts as stage 1 left them when their calibrated
    product has the lower loss on the held-out rows (independent views,
    where fine-tuning the product jointly fits noise); otherwise, and for
    the other estimators, the fine-tuned experts (``"pretrain"`` without
    a stage 2).
expert_weight_decay_ : dict
    Expert name -> the weight decay or L2 coefficient its stage 1
    trained with: for a linear expert of a small cohort, the inner
    folds' choice; ``weight_decay_`` for the others.
weight_decay_grid_ : tuple of float or None
    The L2 coefficients the linear experts chose from (one with no
    held-out rows, or an explicit ``weight_decay``); ``None`` when no
    expert was solved on its own.
weight_decay_scores_ : dict or None
    Linear expert name -> array of its loss on the held-out rows,
    pooled over the folds, at each coefficient of
    ``weight_decay_grid_`` (``None`` entries without held-out rows).
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
device_ : torch.device
    Device the model was trained on.
""")

_PLACEHOLDER = re.compile(r"^(?P<indent>[ ]*)%\((?P<name>\w+)\)s[ ]*$", re.MULTILINE)


#: Every shared attribute, in order: the block the estimators' *Attributes*
#: sections end with (after the attributes of their own).
PASSAGES["fitted_attributes"] = "\n".join(ATTRIBUTES.values())


def fill_docstring(cls):
    """Replace each ``%(name)s`` line of ``cls``'s docstring by the shared text ``name``.

    Parameters
    ----------
    cls : type
        The class whose ``__doc__`` is filled in place; a name that is not
        in :data:`PARAMETERS`, :data:`ATTRIBUTES` or :data:`PASSAGES` raises
        ``KeyError`` on import.

    Returns
    -------
    cls : type
        The same class, so that this can decorate it.
    """
    texts = {**PARAMETERS, **ATTRIBUTES, **PASSAGES}

    def fill(match):
        return textwrap.indent(texts[match["name"]], match["indent"])

    if cls.__doc__ is not None:  # None under python -OO
        cls.__doc__ = _PLACEHOLDER.sub(fill, cls.__doc__)
    return cls
