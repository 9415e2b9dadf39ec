"""Per-modality preprocessing for pipelines in front of :class:`~sk_i2m2.I2M2Classifier`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

# Private scikit-learn helpers with no public equivalent, used the way
# ColumnTransformer uses them: parameter validation in fit, nested parameters
# of named sub-estimators, set_output of a sub-estimator, refusing metadata
# without routing, the column names of a DataFrame.
from sklearn.base import TransformerMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import StrOptions
from sklearn.utils._set_output import _safe_set_output
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _raise_for_params,
    process_routing,
)
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import _get_feature_names, check_is_fitted

from ._data import ModalityDict, index_rows
from ._validation import check_modality_mapping, missing_rows, n_samples_of

__all__ = ["PerModality"]

_SPECIAL = ("passthrough", "drop")


def _is_special(transformer, value):
    return isinstance(transformer, str) and transformer == value


class PerModality(TransformerMixin, _BaseComposition, auto_wrap_output_keys=None):
    """Apply a scikit-learn transformer to each modality of a dict of modalities.

    The multi-modal counterpart of ``ColumnTransformer``: scikit-learn
    transformers take one 2-D array, so a scaler cannot sit in front of
    :class:`~sk_i2m2.I2M2Classifier` in a ``Pipeline`` on its own.
    ``PerModality`` fits a clone of each listed transformer on its modality
    and returns the transformed modalities as a
    :class:`~sk_i2m2.ModalityDict`, ready for the classifier (and for
    ``GridSearchCV``, which splits the ``ModalityDict`` by rows).

    Image, volume and sequence modalities usually need no transformer here
    (:class:`~sk_i2m2.I2M2Classifier` standardises them itself); leave them
    out and they pass through untouched. To encode a mixed
    numeric/categorical table, give that modality a ``ColumnTransformer``.

    Samples that miss a modality keep missing it. A sample misses a
    modality when all its values in it are missing (NaN, ``None`` or
    ``pd.NA``: a row of NaN in a table); each transformer is fitted on, and
    transforms, only the samples that have its modality, and the others get
    an all-NaN row of the output's width, which
    :class:`~sk_i2m2.I2M2Classifier` reads as a missing modality. An
    imputer here therefore fills the gaps of the samples that have the
    modality and never invents a whole modality for those that lack it. A
    modality missing in every sample at ``transform`` is left out of the
    output (as if left out of ``X``). Such output is a float array, or a
    DataFrame with the input's index under ``set_output(transform="pandas")``;
    a sparse output (e.g. of ``OneHotEncoder`` or ``TfidfVectorizer``) stays
    sparse, a CSR matrix whose missing rows store NaN in every column.

    Parameters
    ----------
    transformers : dict
        Modality name -> a scikit-learn transformer (cloned at ``fit``),
        ``"passthrough"`` (keep the modality as it is) or ``"drop"`` (remove
        it from the output). Parameters of a transformer are reachable as
        ``<modality>__<param>`` (e.g. ``tabular__with_mean``) and a whole
        entry as ``<modality>``, for ``set_params`` and ``GridSearchCV``.
    remainder : {"passthrough", "drop"}, default="passthrough"
        What to do with modalities not listed in ``transformers``.

    Attributes
    ----------
    transformers_ : dict
        Modality name -> fitted transformer, ``"passthrough"`` or ``"drop"``,
        for every modality seen in ``fit``, in the order of ``X``.
    modalities_ : list of str
        Modality names seen in ``fit``, in order.
    input_shapes_ : dict
        Modality name -> per-sample shape seen in ``fit`` (``None`` for a
        list of samples of different lengths).
    feature_names_in_ : dict
        Modality name -> column names, for modalities passed as pandas
        DataFrames.

    See Also
    --------
    sklearn.compose.ColumnTransformer : The same idea for the columns of one
        table.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_i2m2 import PerModality
    >>> rng = np.random.RandomState(0)
    >>> X = {"tabular": 50 + 10 * rng.randn(6, 3), "image": rng.rand(6, 1, 8, 8)}
    >>> pm = PerModality({"tabular": StandardScaler()})
    >>> Xt = pm.fit_transform(X)
    >>> Xt
    ModalityDict(tabular: ndarray(6, 3) float64, image: ndarray(6, 1, 8, 8) float64)
    >>> bool(abs(Xt["tabular"].mean()) < 1e-12), Xt["image"] is X["image"]
    (True, True)
    >>> pm.set_params(tabular__with_mean=False).transformers["tabular"]
    StandardScaler(with_mean=False)
    >>> names = pm.get_feature_names_out()
    >>> list(names["tabular"]), names["image"]
    (['x0', 'x1', 'x2'], None)
    """

    _parameter_constraints = {
        "transformers": [dict],
        "remainder": [StrOptions(set(_SPECIAL))],
    }

    def __init__(self, transformers, *, remainder="passthrough"):
        self.transformers = transformers
        self.remainder = remainder

    # ------------------------------------------------------------------
    # Nested parameters, through _BaseComposition's list of (name, estimator).

    @property
    def _transformers(self):
        # Anything but a dict is left for fit's parameter validation to report.
        if isinstance(self.transformers, Mapping):
            return list(self.transformers.items())
        return self.transformers

    @_transformers.setter
    def _transformers(self, value):
        self.transformers = dict(value)

    def get_params(self, deep=True):
        """Get parameters of this transformer and, with ``deep``, of its transformers.

        Parameters
        ----------
        deep : bool, default=True
            Also return each transformer as ``<modality>`` and its
            parameters as ``<modality>__<param>``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("_transformers", deep=deep)

    def set_params(self, **params):
        """Set parameters, including those of the per-modality transformers.

        Parameters
        ----------
        **params : dict
            ``transformers``, ``remainder``, ``<modality>`` (replace one
            transformer) or ``<modality>__<param>``.

        Returns
        -------
        self : PerModality
        """
        # A new ``transformers`` first, so that per-modality entries apply to it.
        if "transformers" in params:
            self.transformers = params.pop("transformers")
        return self._set_params("_transformers", **params)

    def set_output(self, *, transform=None):
        """Set the output container of every transformer.

        The modalities are always returned in a :class:`~sk_i2m2.ModalityDict`;
        this sets the container of each transformed modality, e.g.
        ``"pandas"`` to keep DataFrames (and their column names).

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            As in scikit-learn's ``set_output``; ``None`` leaves it unchanged.

        Returns
        -------
        self : PerModality
        """
        fitted = getattr(self, "transformers_", {})
        for transformer in [*self.transformers.values(), *fitted.values()]:
            if not isinstance(transformer, str):
                _safe_set_output(transformer, transform=transform)
        return self

    # ------------------------------------------------------------------
    # Fit and transform

    def _check_X(self, X, known=None):
        check_modality_mapping(X, known=known)
        return X

    def _validate_transformers(self, X):
        names = list(self.transformers)
        self._validate_names(names)
        missing = [name for name in names if name not in X]
        if missing:
            raise ValueError(
                f"transformers names modality {missing[0]!r}, which is not in X (X has {list(X)})."
            )
        for name, transformer in self.transformers.items():
            if isinstance(transformer, str):
                if transformer not in _SPECIAL:
                    raise ValueError(
                        f"Transformer for modality {name!r} is {transformer!r}; a "
                        "string must be 'passthrough' or 'drop'."
                    )
            elif isinstance(transformer, type) or not (
                hasattr(transformer, "fit") and hasattr(transformer, "transform")
            ):
                raise TypeError(
                    f"Transformer for modality {name!r} must be a scikit-learn "
                    "transformer instance (with fit and transform), 'passthrough' or "
                    f"'drop'; got {transformer!r}."
                )

    def _record_inputs(self, X):
        self.modalities_ = list(X)
        self.input_shapes_ = {name: _sample_shape(value) for name, value in X.items()}
        columns = {name: _get_feature_names(value) for name, value in X.items()}
        self.feature_names_in_ = {
            name: names for name, names in columns.items() if names is not None
        }

    def _fit(self, X, y, params, method):
        X = self._check_X(X)
        self._validate_transformers(X)
        routed = process_routing(self, method, **params)
        fitted, outputs = {}, {}
        for name in X:
            transformer = self.transformers.get(name, self.remainder)
            if isinstance(transformer, str):
                fitted[name] = transformer
                if transformer == "passthrough":
                    outputs[name] = X[name]
                continue
            transformer = clone(transformer)
            value, observed = _observed(X[name])
            if observed is not None and len(observed) == 0:
                raise ValueError(
                    f"Modality {name!r} is missing (all NaN) in every sample; there is "
                    "nothing to fit its transformer on. Drop it from X or give it "
                    "'drop'."
                )
            n = n_samples_of(X[name])
            y_fit = y if observed is None or y is None else index_rows(y, observed)
            step_params = {
                step: _rows_of_params(getattr(routed[name], step, {}), n, observed)
                for step in ("fit", "fit_transform", "transform")
            }
            if method == "fit":
                transformer.fit(value, y_fit, **step_params["fit"])
            elif hasattr(transformer, "fit_transform"):
                outputs[name] = transformer.fit_transform(
                    value, y_fit, **step_params["fit_transform"]
                )
            else:
                outputs[name] = transformer.fit(value, y_fit, **step_params["fit"]).transform(
                    value, **step_params["transform"]
                )
            if name in outputs:
                outputs[name] = _with_missing_rows(outputs[name], X[name], observed, n, name)
            fitted[name] = transformer
        self.transformers_ = fitted
        self._record_inputs(X)
        return outputs

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Fit a clone of each modality's transformer on that modality.

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like with samples on the first axis. Every
            modality named in ``transformers`` must be present.
        y : array-like of shape (n_samples,), default=None
            Passed on to every transformer's ``fit`` (e.g. for
            ``TargetEncoder``).
        **params : dict
            Metadata for the transformers' ``fit``; only with metadata
            routing enabled (``sklearn.set_config(enable_metadata_routing=True)``).

        Returns
        -------
        self : PerModality
        """
        _raise_for_params(params, self, "fit")
        self._fit(X, y, params, "fit")
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None, **params):
        """Fit each modality's transformer and return the transformed modalities.

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like with samples on the first axis.
        y : array-like of shape (n_samples,), default=None
            Passed on to every transformer.
        **params : dict
            Metadata for the transformers; only with metadata routing enabled.

        Returns
        -------
        Xt : ModalityDict
            Transformed modalities, passed-through modalities unchanged,
            dropped ones removed; in the order of ``X``.
        """
        _raise_for_params(params, self, "fit_transform")
        return ModalityDict(self._fit(X, y, params, "fit_transform"))

    def transform(self, X, **params):
        """Transform each modality with its fitted transformer.

        Parameters
        ----------
        X : dict or ModalityDict
            The modalities seen in ``fit``; any may be left out (a modality
            missing at prediction time, see ``I2M2Classifier``), and is then
            absent from the output too.
        **params : dict
            Metadata for the transformers' ``transform``; only with metadata
            routing enabled.

        Returns
        -------
        Xt : ModalityDict
            Transformed modalities in the order seen in ``fit``; a modality
            missing (all NaN) in every sample is left out.
        """
        _raise_for_params(params, self, "transform")
        check_is_fitted(self)
        X = self._check_X(X, known=list(self.transformers_))
        routed = process_routing(self, "transform", **params)
        outputs = {}
        for name, transformer in self.transformers_.items():
            if _is_special(transformer, "drop") or name not in X:
                continue
            if _is_special(transformer, "passthrough"):
                outputs[name] = X[name]
                continue
            value, observed = _observed(X[name])
            if observed is not None and len(observed) == 0:
                continue  # missing in every sample: as if left out of X
            n = n_samples_of(X[name])
            step_params = _rows_of_params(routed[name].transform, n, observed)
            outputs[name] = _with_missing_rows(
                transformer.transform(value, **step_params), X[name], observed, n, name
            )
        return ModalityDict(outputs)

    def get_feature_names_out(self, input_features=None):
        """Output feature names of each modality.

        Parameters
        ----------
        input_features : dict or None, default=None
            Modality name -> input feature names, passed to that modality's
            transformer (or returned as they are for a passed-through
            modality). By default the names seen in ``fit`` are used.

        Returns
        -------
        feature_names_out : dict
            Modality name -> ndarray of str for every modality in the output.
            A passed-through 2-D array without column names gets
            ``x0, x1, ...``; a passed-through modality that is not a table
            (image, volume, sequence) gets ``None``.
        """
        check_is_fitted(self)
        input_features = dict(input_features or {})
        names = {}
        for name, transformer in self.transformers_.items():
            if _is_special(transformer, "drop"):
                continue
            given = input_features.get(name)
            if not isinstance(transformer, str):
                if not hasattr(transformer, "get_feature_names_out"):
                    raise AttributeError(
                        f"Transformer {type(transformer).__name__} of modality {name!r} "
                        "does not provide get_feature_names_out."
                    )
                names[name] = transformer.get_feature_names_out(given)
            elif given is not None:
                names[name] = np.asarray(given, dtype=object)
            elif name in self.feature_names_in_:
                names[name] = self.feature_names_in_[name].copy()
            elif self.input_shapes_[name] is not None and len(self.input_shapes_[name]) == 1:
                n_features = self.input_shapes_[name][0]
                names[name] = np.asarray([f"x{i}" for i in range(n_features)], dtype=object)
            else:
                names[name] = None
        return names

    # ------------------------------------------------------------------
    # scikit-learn integration

    def get_metadata_routing(self):
        """Metadata routing of this transformer to the per-modality transformers.

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRouter
        """
        router = MetadataRouter(owner=self)
        for name, transformer in self.transformers.items():
            if isinstance(transformer, str):
                continue
            mapping = MethodMapping().add(caller="fit", callee="fit")
            if hasattr(transformer, "fit_transform"):
                mapping.add(caller="fit_transform", callee="fit_transform")
            else:
                mapping.add(caller="fit_transform", callee="fit")
                mapping.add(caller="fit_transform", callee="transform")
            mapping.add(caller="transform", callee="transform")
            router.add(method_mapping=mapping, **{name: transformer})
        return router

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        # Whatever the transformers allow; PerModality itself checks nothing.
        transformers = self.transformers.values() if isinstance(self.transformers, Mapping) else []
        tags.input_tags.allow_nan = all(
            get_tags(t).input_tags.allow_nan for t in transformers if not isinstance(t, str)
        )
        tags.transformer_tags.preserves_dtype = []
        return tags


def _sample_shape(value):
    """Per-sample shape of one modality; ``None`` for ragged lists."""
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            shape = np.asarray(value).shape
        except ValueError:
            return None
    return tuple(int(s) for s in shape[1:])


def _observed(value):
    """``(rows of value that have the modality, their indices)``; indices ``None`` if all."""
    missing = missing_rows(value)
    if not missing.any():
        return value, None
    observed = np.flatnonzero(~missing)
    return index_rows(value, observed), observed


def _rows_of_params(params, n_samples, observed):
    """Metadata with one value per sample cut down to the ``observed`` rows."""
    if observed is None:
        return params
    return {
        key: index_rows(value, observed) if n_samples_of(value) == n_samples else value
        for key, value in params.items()
    }


def _sparse_with_missing_rows(output, observed, n_samples):
    """A sparse ``output`` of the ``observed`` rows as CSR, others rows of stored NaN.

    Only the missing rows are dense (every value stored, NaN): the classifier
    reads them as missing and keeps the matrix sparse.
    """
    output = sp.csr_matrix(output, dtype=np.result_type(output.dtype, np.float32))
    width = output.shape[1]
    absent = np.setdiff1d(np.arange(n_samples), observed)
    nan_rows = sp.csr_matrix(
        (
            np.full(len(absent) * width, np.nan, dtype=output.dtype),
            np.tile(np.arange(width), len(absent)),
            np.arange(0, len(absent) * width + 1, width),
        ),
        shape=(len(absent), width),
    )
    order = np.empty(n_samples, dtype=np.int64)
    order[observed] = np.arange(len(observed))
    order[absent] = len(observed) + np.arange(len(absent))
    return sp.vstack([output, nan_rows], format="csr")[order]


def _with_missing_rows(output, value, observed, n_samples, name):
    """``output`` of the ``observed`` rows, with all-NaN rows put back for the others."""
    if observed is None:
        return output
    if sp.issparse(output):
        return _sparse_with_missing_rows(output, observed, n_samples)
    if isinstance(output, pd.DataFrame):
        # Row positions: -1 is not a label of the reset index, hence a NaN row.
        take = np.full(n_samples, -1)
        take[observed] = np.arange(len(observed))
        full = output.reset_index(drop=True).reindex(take)
        full.index = value.index if isinstance(value, pd.DataFrame) else pd.RangeIndex(n_samples)
        return full
    if isinstance(output, torch.Tensor):
        dtype = output.dtype if output.is_floating_point() else torch.float32
        full = torch.full(
            (n_samples, *output.shape[1:]), float("nan"), dtype=dtype, device=output.device
        )
        full[torch.as_tensor(observed, device=output.device)] = output.to(dtype)
        return full
    try:
        output = np.asarray(output)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The transformer of modality {name!r} returned {type(output).__name__}, "
            "which cannot hold the all-NaN rows of the samples that miss the "
            "modality; return an array or a DataFrame."
        ) from exc
    dtype = output.dtype if output.dtype.kind in "fcO" else np.float64
    full = np.full((n_samples, *output.shape[1:]), np.nan, dtype=dtype)
    full[observed] = output
    return full
