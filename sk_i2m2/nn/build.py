"""Build the untrained I2M2 module from encoder and fusion specs."""

from __future__ import annotations

from .._lazy import materialize
from .experts import INTER, Encoder, I2M2Module, InterExpert, IntraExpert, feature_size
from .standardize import Standardize, input_moments

__all__ = ["expert_plan", "build_module", "build_module_for"]


def expert_plan(modalities, dependencies):
    """Expert names for ``dependencies`` ("both", "intra" or "inter").

    With a single modality every choice is the one unimodal expert.
    """
    if len(modalities) == 1:
        return list(modalities)
    intra = list(modalities) if dependencies in ("both", "intra") else []
    inter = [INTER] if dependencies in ("both", "inter") else []
    return intra + inter


def build_module(
    X,
    specs,
    fusion,
    n_classes,
    *,
    dependencies,
    standardize=True,
    inter_missing="null",
    modality_dropout=0.0,
    present=None,
):
    """The untrained experts of one model.

    Parameters
    ----------
    X : dict
        Modality -> training tensor ``(n, *sample_shape)`` or
        :class:`~sk_i2m2._lazy.LazyRows`, in the model's modality order.
        Input statistics are computed from its rows (where they live, e.g.
        on the GPU, or in chunks) and two rows are run through each encoder
        to learn its feature size.
    specs : dict
        Modality -> :class:`~sk_i2m2.encoders.EncoderSpec`.
    fusion : FusionSpec
        Fusion of the inter expert.
    n_classes : int
    dependencies : {"both", "intra", "inter"}
    standardize : bool, default=True
        Put a :class:`~sk_i2m2.nn.standardize.Standardize` in front of
        every encoder whose spec asks for it.
    inter_missing, modality_dropout
        As for :class:`~sk_i2m2.I2M2Classifier`.
    present : bool tensor of shape (n, n_modalities) or None
        Rows that have each modality; statistics use those rows only.

    Returns
    -------
    I2M2Module
    """
    modalities = list(X)

    def observed(name):
        x = X[name]
        return x if present is None else x[present[:, modalities.index(name)]]

    scalers = {}
    if standardize:
        for name, spec in specs.items():
            if spec.standardizes_input:
                sample_shape = tuple(X[name].shape[1:])
                axes = spec.feature_axes(sample_shape)
                scalers[name] = input_moments(observed(name), axes)

    def make_encoder(name):
        spec = specs[name]
        body = spec.build(tuple(X[name].shape[1:]))
        scaler = Standardize(*scalers[name]) if name in scalers else None
        encoder = Encoder(body, scaler)
        example = materialize(observed(name)[:2])
        try:
            return encoder, feature_size(encoder, example)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(
                f"The encoder of modality {name!r} ({type(spec).__name__}) fails on "
                f"a batch of shape {tuple(example.shape)}: {exc}"
            ) from exc

    experts = {}
    for name in expert_plan(modalities, dependencies):
        if name == INTER:
            built = {m: make_encoder(m) for m in modalities}
            sizes = [size for _, size in built.values()]
            experts[INTER] = InterExpert(
                {m: enc for m, (enc, _) in built.items()},
                sizes,
                fusion.build(sizes),
                n_classes,
                fusion.hidden_size,
                fusion.dropout,
                missing=inter_missing,
                modality_dropout=modality_dropout,
            )
        else:
            encoder, size = make_encoder(name)
            experts[name] = IntraExpert(name, modalities.index(name), encoder, size, n_classes)
    return I2M2Module(experts)


def build_module_for(estimator, X, present=None):
    """:func:`build_module` with the settings of a fitted I2M2 estimator.

    Reads ``encoders_``, ``fusion_``, the number of outputs per expert
    (``_n_outputs()``, e.g. the number of classes) and the parameters
    ``dependencies``, ``standardize``, ``inter_missing`` and
    ``modality_dropout``; the estimator's fit and its loading from disk
    build their modules through this one function.
    """
    return build_module(
        X,
        estimator.encoders_,
        estimator.fusion_,
        estimator._n_outputs(),
        dependencies=estimator.dependencies,
        standardize=estimator.standardize,
        inter_missing=estimator.inter_missing,
        modality_dropout=estimator.modality_dropout,
        present=present,
    )
