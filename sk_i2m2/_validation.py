"""Input validation of I2M2Classifier: every check runs before any training.

Each problem raises ``TypeError`` (wrong kind of input) or ``ValueError``
(wrong content) with a message that names the modality and says what to do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import type_of_target

from .nn.experts import INTER, PRESENT

_TORCH_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                         torch.int64)


def check_known_modalities(names, fitted):
    """Raise ``ValueError`` if ``names`` has a modality that is not in ``fitted``."""
    extra = [m for m in names if m not in fitted]
    if extra:
        raise ValueError(
            f"Modality {extra[0]!r} was not seen in fit (fitted modalities: "
            f"{list(fitted)})."
        )


def check_modalities(X, fitted=None):
    """Validate ``X``; return its tensors, DataFrame columns and presence mask.

    A sample misses a modality when all its values in that modality are NaN
    or, at prediction time, when the modality is left out of ``X``; every
    sample needs at least one modality.

    Parameters
    ----------
    X : object
        What the user passed as ``X``.
    fitted : I2M2Classifier or None, default=None
        ``None`` while fitting; at prediction time the fitted estimator, whose
        modalities, per-sample shapes and DataFrame columns ``X`` must match
        (modalities may be left out).

    Returns
    -------
    tensors : dict
        Modality -> float32 CPU tensor, in ``fitted.modalities_`` order at
        prediction time; missing samples (and left-out modalities) are zeros.
    columns : dict
        Modality -> DataFrame column names, or ``None`` for other arrays.
    present : bool tensor of shape (n_samples, n_modalities) or None
        Which sample has which modality (columns in the order of
        ``tensors``); ``None`` when every sample has all of them.
    """
    if not isinstance(X, Mapping):
        raise TypeError(
            "X must be a mapping of modality name to array (a dict or "
            f"ModalityDict); got {type(X).__name__}. Wrap a single array as "
            "{'name': array}."
        )
    names = list(dict(X))
    if not names:
        raise ValueError("X is an empty mapping; it needs at least one modality.")
    if fitted is None:
        check_modality_names(names)
    else:
        check_known_modalities(names, fitted.modalities_)
    tensors, columns, rows_present = {}, {}, {}
    for name in names:
        tensors[name], columns[name], rows_present[name] = as_float_tensor(name, X[name])
    first = names[0]
    n_first = tensors[first].shape[0]
    for name, tensor in tensors.items():
        n = tensor.shape[0]
        if n == 0:
            raise ValueError(f"Modality {name!r} has 0 samples.")
        if n != n_first:
            raise ValueError(
                f"Modality {name!r} has {n} samples but modality {first!r} has "
                f"{n_first}; all modalities must have the same number of samples."
            )
    if fitted is None:
        for name, rows in rows_present.items():
            if rows is not None and not bool(rows.any()):
                raise ValueError(
                    f"Modality {name!r} is missing (all NaN) in every sample; drop it "
                    "from X."
                )
    else:
        for name, tensor in tensors.items():
            _check_like_fit(fitted, name, tuple(tensor.shape[1:]), columns[name])
        for name in fitted.modalities_:
            if name not in tensors:  # left out: missing in every sample
                tensors[name] = torch.zeros((n_first, *fitted.input_shapes_[name]))
                columns[name] = None
                rows_present[name] = torch.zeros(n_first, dtype=torch.bool)
        tensors = {m: tensors[m] for m in fitted.modalities_}
    if all(rows is None for rows in rows_present.values()):
        return tensors, columns, None
    present = torch.stack([
        torch.ones(n_first, dtype=torch.bool) if rows_present[m] is None else rows_present[m]
        for m in tensors
    ], dim=1)
    empty = torch.nonzero(~present.any(1)).flatten()
    if len(empty):
        raise ValueError(
            f"{len(empty)} sample(s) have no modality (every modality is missing or all "
            f"NaN), first sample {int(empty[0])}; each sample needs at least one of "
            f"{list(tensors)}."
        )
    return tensors, columns, present


def check_modality_names(names):
    """Reject names that cannot label an expert (and a torch submodule)."""
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"Modality names must be strings; got {name!r} of type "
                f"{type(name).__name__}."
            )
        if not name or "." in name:
            raise ValueError(
                f"Modality name {name!r} is not allowed: names must be non-empty and "
                "contain no '.'."
            )
        if name in (INTER, PRESENT):
            raise ValueError(
                f"Modality name {name!r} is reserved (it names the inter-modality "
                "expert); rename the modality."
            )
        # Experts are kept in a torch ModuleDict keyed by modality and called
        # as module(**X), so a name must not shadow one of their attributes.
        if name == "self" or hasattr(torch.nn.ModuleDict, name):
            raise ValueError(
                f"Modality name {name!r} clashes with an attribute of torch.nn.Module "
                "and cannot name an expert; rename the modality."
            )


def _check_like_fit(fitted, name, shape, columns):
    expected = tuple(fitted.input_shapes_[name])
    if shape != expected:
        if len(shape) == len(expected) == 1:
            problem = f"{shape[0]} features but had {expected[0]}"
        else:
            problem = f"samples of shape {shape} but had {expected}"
        raise ValueError(f"Modality {name!r} has {problem} in fit.")
    fitted_columns = fitted.feature_names_in_.get(name)
    if fitted_columns is not None and columns is not None:
        if list(columns) != list(fitted_columns):
            renamed = sorted(set(map(str, columns)) ^ set(map(str, fitted_columns)))
            problem = (f"columns {renamed[:5]} differ" if renamed
                       else "columns are in a different order")
            raise ValueError(
                f"Modality {name!r}: the DataFrame's {problem} from those seen in "
                f"fit. Expected columns {list(fitted_columns)}; select them with "
                "df[expected_columns]."
            )
    elif fitted_columns is not None:
        warnings.warn(
            f"Modality {name!r} has no column names, but it was a DataFrame in fit; "
            "its columns are taken in the order seen in fit.",
            UserWarning, stacklevel=6,
        )
    elif columns is not None:
        warnings.warn(
            f"Modality {name!r} is a DataFrame, but it had no column names in fit; "
            "its columns are taken by position.",
            UserWarning, stacklevel=6,
        )


def as_float_tensor(name, value):
    """``(float32 CPU tensor, DataFrame columns or None, present rows or None)``.

    Integer, boolean and float64 inputs are cast to float32. Sparse,
    object, string, complex and date/time inputs are rejected, as are
    infinite values and NaN, except in a sample whose values in this
    modality are all NaN: that sample misses the modality. Its row is set
    to zeros and ``present`` (a bool tensor of shape ``(n_samples,)``,
    ``None`` when no sample misses the modality) marks it False.
    """
    columns = None
    if hasattr(value, "tocsr") or type(value).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"Modality {name!r} is a scipy sparse matrix, which is not supported; "
            "convert it with .toarray()."
        )
    if isinstance(value, pd.DataFrame):
        for column, dtype in value.dtypes.items():
            if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
                raise TypeError(
                    f"Modality {name!r} has non-numeric column {column!r} (dtype "
                    f"{dtype}); encode it first, e.g. with "
                    f"PerModality({{{name!r}: ColumnTransformer(...)}})."
                )
        columns = np.asarray(value.columns, dtype=object)
        # Nullable pandas dtypes hold pd.NA: turn it into NaN, reported below.
        value = value.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(value, pd.Series):
        value = value.to_numpy()
    if isinstance(value, torch.Tensor):
        if value.is_complex() or not (value.is_floating_point()
                                      or value.dtype in _TORCH_INTEGER_DTYPES):
            raise TypeError(
                f"Modality {name!r} has unsupported dtype {value.dtype}; numeric "
                "values (float, int or bool) are required."
            )
        source = value.detach().cpu()
    else:
        try:
            source = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Modality {name!r} cannot be read as an array ({exc}); pass an "
                "array with the same shape for every sample."
            ) from exc
        if source.dtype.kind not in "biuf":
            raise TypeError(
                f"Modality {name!r} has dtype {source.dtype} ({type(value).__name__}); "
                "numeric values (float, int or bool) are required."
            )
    if source.ndim < 2:
        raise ValueError(
            f"Modality {name!r} must be at least 2-D with samples first, e.g. "
            f"(n_samples, n_features); got shape {tuple(source.shape)}. Use "
            "array.reshape(-1, 1) for a single feature."
        )
    if 0 in source.shape[1:]:
        raise ValueError(
            f"Modality {name!r} has samples of shape {tuple(source.shape[1:])}, "
            "which hold no values."
        )
    if isinstance(source, torch.Tensor):
        tensor = source.to(torch.float32)
    else:
        with np.errstate(over="ignore"):  # values past float32 are reported below
            tensor = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))
    present = None
    # A float64 sum of float32 values cannot overflow, so it is finite exactly
    # when every value is: one pass, no mask the size of the data.
    if not math.isfinite(tensor.sum(dtype=torch.float64)):
        rows = tensor.view(len(tensor), -1)
        missing = rows.isnan().all(1)
        if not bool(torch.isfinite(rows[~missing]).all()):
            _raise_non_finite(name, source, missing.numpy())
        tensor = tensor.masked_fill(missing.view(-1, *([1] * (tensor.dim() - 1))), 0.0)
        present = ~missing
    return tensor, columns, present


def _raise_non_finite(name, source, missing):
    """Report the non-finite values of ``source`` outside the ``missing`` samples."""
    if isinstance(source, torch.Tensor):
        values = source.double().numpy()
    else:
        values = np.asarray(source, dtype=np.float64)
    values = values.reshape(len(values), -1)
    values[missing] = 0.0
    n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if n_nan == 0 and n_inf == 0:
        raise ValueError(
            f"Modality {name!r} has values beyond the float32 range (about "
            "+-3.4e38); rescale them."
        )
    first = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
    found = " and ".join(f"{n} {kind}" for n, kind in [(n_nan, "NaN"), (n_inf, "infinite")]
                         if n)
    raise ValueError(
        f"Modality {name!r} contains {found} value(s) (first in sample {first}); "
        "impute or drop them first (e.g. sklearn.impute.SimpleImputer). A sample "
        "whose values in a modality are all NaN counts as missing that modality."
    )


def check_target(y, n_samples):
    """Validate ``y`` and return ``(classes, y_encoded)``."""
    y = np.asarray(y)
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise ValueError(f"y must be 1-D (n_samples,); got shape {y.shape}.")
    y = y.ravel()
    if len(y) != n_samples:
        raise ValueError(f"y has {len(y)} samples but the modalities have {n_samples}.")
    if y.dtype.kind in "fO":
        missing = np.flatnonzero(pd.isna(y))
        if missing.size:
            raise ValueError(
                f"y has {missing.size} missing label(s) (NaN or None), first in sample "
                f"{missing[0]}; drop those samples."
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
            f"y has a single class ({as_python(encoder.classes_[0])!r}); at least 2 "
            "are needed."
        )
    return encoder.classes_, encoder.transform(y)


def as_python(value):
    """A numpy scalar as the Python value, so that messages show ``1``, not ``np.int64(1)``."""
    return value.item() if isinstance(value, np.generic) else value
