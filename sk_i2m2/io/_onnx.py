"""Export of a fitted estimator's whole product of experts to ONNX.

The graph holds what ``predict_proba`` (or ``predict(X, return_std=True)``,
or a survival model's ``predict``) computes after input validation: the
in-model standardisation, every expert, the product and the fitted
temperature. The last step, from the experts' outputs to the predictions,
is the outcome type's (:meth:`~sk_i2m2.outcomes.Outcome.prediction_head`).
It is exported by torch's
``torch.export``-based exporter (``dynamo=True``): the legacy TorchScript
exporter cannot export the conv encoders' adaptive average pooling.
"""

from __future__ import annotations

import copy
import json
import os
import warnings

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._base import _fitted_state
from .._persistence import SaveLoadMixin
from ..nn.encoder_modules import Flatten
from ._optional import import_optional

__all__ = ["to_onnx"]


class _Serving(nn.Module):
    """One positional input per modality, in ``modalities_`` order, into the model and head."""

    def __init__(self, module, modalities, head):
        super().__init__()
        self.module = module
        self.modalities = list(modalities)
        self.head = head

    def forward(self, *inputs):
        return self.head(self.module(**dict(zip(self.modalities, inputs))))


def to_onnx(estimator, path):
    """Export a fitted sk-i2m2 estimator to an ONNX file.

    The graph is the whole fitted model: input standardisation, every
    expert, their product and the fitted temperature, so onnxruntime
    (``pip install "sk-i2m2[onnx]"``) reproduces ``predict_proba`` to
    float32 precision without torch. It has one float32 input per modality,
    named after it, of shape ``(batch, *input_shapes_[modality])`` (a
    DataFrame modality: its columns in the fitted order; a text modality:
    its embeddings), with a dynamic batch axis. Every sample must have every
    modality: the graph has no presence mask.

    Outputs:

    - classifier: ``"probabilities"``, ``(batch, n_classes)`` with columns
      in ``classes_`` order (multilabel: the probability of each label);
    - regressor: ``"mean"`` and ``"std"``, as ``predict(X, return_std=True)``;
    - survival model: ``"risk_score"``, ``(batch,)``, as ``predict``.

    The file's metadata (``metadata_props``) records the estimator class,
    the modalities and their shapes, and ``classes_`` for a classifier.

    Parameters
    ----------
    estimator : I2M2Classifier, I2M2Regressor or I2M2SurvivalAnalysis
        Fitted. For a Pipeline, export its last step and run the
        preprocessing in front of the ONNX model.
    path : str or os.PathLike
        The ``.onnx`` file to write.

    Returns
    -------
    path : str
        The file written.

    Raises
    ------
    ImportError
        onnx or onnxscript is not installed (``pip install "sk-i2m2[onnx]"``).
    ValueError
        The model cannot be exported; the message names the modality whose
        encoder does not trace when one is the cause (e.g. a custom module
        whose Python control flow depends on the input values), or says
        that the estimator's outcome type has no prediction head.
    """
    if not isinstance(estimator, SaveLoadMixin):
        raise TypeError(
            "sk_i2m2.to_onnx exports an sk-i2m2 estimator; got "
            f"{type(estimator).__name__}. For a Pipeline, export its last step."
        )
    check_is_fitted(estimator, "module_")
    # The outcome type says what the model predicts from its experts' outputs.
    outcome = estimator._fitted_outcome()
    head = outcome.prediction_head(_fitted_state(estimator))
    if head is None:
        raise ValueError(
            f"Cannot export {type(estimator).__name__} to ONNX: its outcome type "
            f"({type(outcome).__name__}) defines no prediction_head."
        )
    outputs = list(head.output_names)
    onnx = import_optional("onnx", "onnx", "sk_i2m2.to_onnx")
    import_optional("onnxscript", "onnx", "sk_i2m2.to_onnx")
    # A CPU float32 copy: the fitted model keeps its device and layout.
    module = copy.deepcopy(estimator.module_).to("cpu").float().eval()
    serving = _Serving(module, estimator.modalities_, head.module).eval()
    examples = tuple(torch.zeros((2, *estimator.input_shapes_[m])) for m in estimator.modalities_)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter's internal deprecation and layout notices say nothing to the user.
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                serving,
                examples,
                dynamo=True,
                input_names=list(estimator.modalities_),
                output_names=outputs,
                dynamic_shapes=(tuple({0: batch} for _ in examples),),
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types, all meaning "cannot"
            raise ValueError(_why_not_exported(estimator, module, examples, exc)) from exc
    path = os.fspath(path)
    program.save(path)
    model = onnx.load(path)
    metadata = {
        "sk_i2m2_estimator": type(estimator).__name__,
        "modalities": json.dumps(list(estimator.modalities_)),
        "input_shapes": json.dumps({m: list(s) for m, s in estimator.input_shapes_.items()}),
        **head.metadata,
    }
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def _why_not_exported(estimator, module, examples, exc):
    """The message of a failed export, naming the modality whose encoder is the cause."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for modality, example in zip(estimator.modalities_, examples):
        encoder = _encoder_of(module, modality)
        if encoder is None:
            continue
        try:
            torch.export.export(encoder, (example,), strict=False)
        except Exception as inner:  # the same failure, in the encoder alone
            body = getattr(encoder, "body", encoder)
            # A user's module sits inside the Flatten wrapper of nn.encoder_modules.
            body = body.net if isinstance(body, Flatten) else body
            reason = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
            return (
                f"Cannot export {type(estimator).__name__} to ONNX: the encoder of "
                f"modality {modality!r} ({type(body).__name__}) does not trace with "
                f"torch.export ({type(inner).__name__}: {reason}). Python control flow "
                "on input values, calls into numpy and in-place tricks on inputs do not "
                "export; write the module with torch operations only."
            )
    return f"Cannot export {type(estimator).__name__} to ONNX: {type(exc).__name__}: {first_line}"


def _encoder_of(module, modality):
    """The first encoder module of ``modality`` in a (fold-ensemble) I2M2 module."""
    model = module.folds[0] if hasattr(module, "folds") else module
    if modality in model.frozen:
        return model.frozen[modality]
    expert = model.experts[modality] if modality in model.experts else None
    if expert is not None:
        return expert.encoder
    inter = model.experts["inter"] if "inter" in model.experts else None
    if inter is not None and modality in inter.encoders:
        return inter.encoders[modality]
    return None
