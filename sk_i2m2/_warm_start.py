"""``warm_start``: the stage-1 experts a refit keeps from the previous fit."""

from __future__ import annotations

import joblib

from .nn.experts import INTER

__all__ = ["experts_to_keep"]


def experts_to_keep(estimator, tensors, fitted_target, specs, fusion, n_folds):
    """``warm_start``: the trained stage-1 experts that a refit of ``estimator`` keeps.

    A list with one dict (expert name -> expert module) per fold, from
    ``pretrained_experts_`` or else the previous fit's stage-1 nets;
    ``None`` when there is no previous fit with stage-1 experts. An
    expert is kept when what builds it is unchanged: its modality's
    encoder spec, and for the inter expert every encoder and the fusion.
    Raises ``ValueError`` when the data's modalities, shapes, target or
    folds differ from the previous fit's.
    """
    pool = getattr(estimator, "pretrained_experts_", None)
    if pool is None:
        nets = getattr(estimator, "fold_nets_", None) or [
            (getattr(estimator, "pretrain_net_", None),)
        ]
        if nets[0][0] is None or getattr(estimator, "interrupted_stage_", None) == "pretrain":
            return None
        pool = [dict(net[0].module_.experts) for net in nets]
    shapes = {m: tuple(t.shape[1:]) for m, t in tensors.items()}
    differences = []
    if shapes != estimator.input_shapes_:
        differences.append(f"modality shapes {shapes}, not {estimator.input_shapes_}")
    for name, value in fitted_target.items():
        if joblib.hash(value) != joblib.hash(getattr(estimator, name)):
            differences.append(f"{name} {value!r}, not {getattr(estimator, name)!r}")
    if (n_folds or 1) != len(pool):
        differences.append(f"{n_folds or 1} fold model(s), not {len(pool)}")
    if differences:
        raise ValueError(
            "warm_start=True keeps the stage-1 experts of the previous fit, which "
            "needs the same data; this fit has " + "; ".join(differences) + ". Fit with "
            "warm_start=False to train every expert anew."
        )
    unchanged = {m: joblib.hash(specs[m]) == joblib.hash(estimator.encoders_[m]) for m in specs}
    unchanged[INTER] = all(unchanged.values()) and joblib.hash(fusion) == joblib.hash(
        estimator.fusion_
    )
    return [{name: e for name, e in experts.items() if unchanged[name]} for experts in pool]
