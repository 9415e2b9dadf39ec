"""Validation of what users pass as ``X`` and ``y``.

- :func:`check_modality_mapping`: the one check of a mapping of modalities
  (a mapping, names, reserved names, same number of samples), shared by
  :class:`~sk_i2m2.I2M2Classifier`, :class:`~sk_i2m2.PerModality`,
  :class:`~sk_i2m2.ModalityDict` and :mod:`sk_i2m2.inspection`;
- :func:`check_modalities`: the classifier's input, every modality read by
  scikit-learn's ``check_array`` and turned into a float32 tensor, or, for
  sparse matrices, arrays on disk and :class:`~sk_i2m2.FileModality`,
  checked in chunks and kept as :class:`~sk_i2m2._lazy.LazyRows`;
- :func:`missing_rows`: which samples miss a modality (all values NaN).

The target's checks belong to its outcome type (:mod:`sk_i2m2.outcomes`).

Each problem raises ``TypeError`` (wrong kind of input) or ``ValueError``
(wrong content) with a message that names the modality. Where scikit-learn
or numpy find the problem, the message keeps their words after the name,
``"Modality 'tab': <their message>"``, so it reads the same as in any other
scikit-learn estimator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.utils import assert_all_finite, check_array

# Private, with no public equivalent: the sample count scikit-learn itself
# uses (arrays, DataFrames, sparse matrices, tensors, lists).
from sklearn.utils.validation import _num_samples

from ._lazy import FileModality, LazyRows, is_on_disk, source_of
from .nn.experts import INTER, PRESENT, SAMPLE_WEIGHT

#: Names the classifier keeps for itself: modality name -> what it names.
ESTIMATOR_RESERVED = {
    INTER: "it names the inter-modality expert",
    PRESENT: "it names the mask of observed modalities",
    SAMPLE_WEIGHT: "it names the sample weights",
}

# ----------------------------------------------------------------------
# The mapping


def n_samples_of(value):
    """Number of samples (first axis) of one modality, ``None`` if it is not array-like."""
    # A dict is not a modality, but scipy's dok_matrix (a dict with a shape) is.
    if isinstance(value, (str, bytes)) or (
        isinstance(value, Mapping) and not hasattr(value, "shape")
    ):
        return None
    try:
        return int(_num_samples(value))
    except TypeError:
        return None


def check_modality_names(names, *, reserved=None, torch_names=False):
    """Raise if a modality name cannot be used.

    Parameters
    ----------
    names : iterable
        The names.
    reserved : dict or None, default=None
        Name -> what it already names, for names the caller keeps for itself.
    torch_names : bool, default=False
        Also require names that can key a ``torch.nn.ModuleDict`` of experts
        (no ``"."``, no attribute of ``torch.nn.Module``).
    """
    reserved = reserved or {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"Modality names must be strings; got {name!r} of type {type(name).__name__}."
            )
        if not name:
            raise ValueError("Modality name '' is not allowed: names must be non-empty.")
        if name in reserved:
            raise ValueError(
                f"Modality name {name!r} is reserved ({reserved[name]}); rename the modality."
            )
        if "__" in name:
            # As for the steps of a scikit-learn Pipeline: "__" separates the
            # parts of a nested parameter name.
            raise ValueError(
                f"Modality name {name!r} contains '__', which separates nested "
                "parameter names (e.g. encoders__<modality>__<param>, "
                "<modality>__<param> in PerModality); rename the modality."
            )
        if torch_names:
            if "." in name:
                raise ValueError(
                    f"Modality name {name!r} is not allowed: names must contain no '.'."
                )
            # Experts are kept in a torch ModuleDict keyed by modality and
            # called as module(**X), so a name must not shadow one of their
            # attributes.
            if name == "self" or hasattr(torch.nn.ModuleDict, name):
                raise ValueError(
                    f"Modality name {name!r} clashes with an attribute of "
                    "torch.nn.Module and cannot name an expert; rename the modality."
                )


def check_known_modalities(names, fitted):
    """Raise ``ValueError`` if ``names`` has a modality that is not in ``fitted``."""
    extra = [m for m in names if m not in fitted]
    if extra:
        raise ValueError(
            f"Modality {extra[0]!r} was not seen in fit (fitted modalities: {list(fitted)})."
        )


def check_modality_mapping(X, *, known=None, reserved=None, torch_names=False, allow_empty=False):
    """Check that ``X`` is a mapping of modality name to samples; return ``n_samples``.

    The one check of the container, shared by everything that takes ``X``:
    a mapping, not empty, valid names (see :func:`check_modality_names`), or
    only names in ``known`` (at prediction time), and the same number of
    samples in every modality. The arrays themselves are not read.

    Parameters
    ----------
    X : object
        What the user passed as ``X``.
    known : list of str or None, default=None
        The modalities seen in fit; ``X`` may hold any of them and no other.
        ``None`` checks the names instead.
    reserved : dict or None, default=None
        Name -> what it already names (see :func:`check_modality_names`).
    torch_names : bool, default=False
        See :func:`check_modality_names`.
    allow_empty : bool, default=False
        Accept a mapping without modalities (then ``None`` is returned).

    Returns
    -------
    n_samples : int or None
        The number of samples of every modality.
    """
    if not isinstance(X, Mapping):
        raise TypeError(
            "X must be a mapping of modality name to array (a dict or "
            f"ModalityDict); got {type(X).__name__}. Wrap a single array as "
            "{'name': array}."
        )
    names = list(X.keys())
    if not names:
        if allow_empty:
            return None
        raise ValueError("X is an empty mapping; it needs at least one modality.")
    if known is None:
        check_modality_names(names, reserved=reserved, torch_names=torch_names)
    else:
        check_known_modalities(names, known)
    first, n_first = names[0], None
    for name in names:
        n = n_samples_of(X[name])
        if n is None:
            raise TypeError(
                f"Modality {name!r} must be an array-like with samples on the first "
                "axis (numpy array, torch tensor, pandas DataFrame, scipy sparse "
                f"matrix or list); got {type(X[name]).__name__}."
            )
        if n_first is None:
            n_first = n
        elif n != n_first:
            raise ValueError(
                f"Modality {name!r} has {n} samples but modality {first!r} has "
                f"{n_first}; all modalities must have the same number of samples."
            )
    return n_first


# ----------------------------------------------------------------------
# Missing samples


def missing_rows(value):
    """Which samples miss this modality: a bool array of shape ``(n_samples,)``.

    A sample misses a modality when all its values in it are missing: NaN,
    ``None`` or ``pd.NA`` (a row of NaN in a table, an image or a sequence
    of NaN, a ``None`` text). Samples of a non-float array never miss it.

    Parameters
    ----------
    value : array-like
        One modality, samples on the first axis: numpy array, pandas
        DataFrame or Series, scipy sparse matrix, torch tensor or list.

    Returns
    -------
    missing : ndarray of bool of shape (n_samples,)
    """
    n = n_samples_of(value)
    none = np.zeros(n or 0, dtype=bool)
    if not n:
        return none
    if isinstance(value, pd.DataFrame):
        if value.shape[1] == 0:
            return none
        return value.isna().to_numpy().all(axis=1)
    if isinstance(value, pd.Series):
        return value.isna().to_numpy()
    if sp.issparse(value):
        if value.dtype.kind not in "fc" or value.shape[1] == 0:
            return none
        csr = sp.csr_array(value)
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        counts = np.bincount(rows[np.isnan(csr.data)], minlength=n)
        return counts == value.shape[1]
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or value[0].numel() == 0:
            return none
        flat = value.detach().reshape(n, -1)
        if math.isfinite(flat.sum(dtype=torch.float64)):
            return none
        return flat.isnan().all(1).cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged: one entry per sample
        return np.array([_entry_missing(v) for v in value], dtype=bool)
    if array.ndim == 0 or array.size == 0:
        return none
    if array.dtype.kind == "f":
        # One pass, no mask the size of the data, when nothing is NaN.
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(np.sum(array, dtype=np.float64)):
                return none
        flat = array.reshape(n, -1)
        # A sample whose first value is a number is observed: only the others
        # need a full look.
        candidates = np.flatnonzero(np.isnan(flat[:, 0]))
        missing = none.copy()
        missing[candidates] = np.isnan(flat[candidates]).all(axis=1)
        return missing
    if array.dtype.kind == "O":
        return pd.isna(array).reshape(n, -1).all(axis=1)
    return none


def _entry_missing(entry):
    missing = pd.isna(entry)
    return bool(np.all(missing)) if np.ndim(missing) else bool(missing)


# ----------------------------------------------------------------------
# The classifier's input


def check_modalities(X, fitted=None, encoders=None):
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
    encoders : dict or None, default=None
        The estimator's ``encoders`` while fitting (``fitted.encoders_`` at
        prediction time): a modality whose entry has an ``embed_texts``
        method (:class:`~sk_i2m2.encoders.TextEmbedding`) is a sequence of
        strings, embedded here.

    Returns
    -------
    tensors : dict
        Modality -> float32 CPU tensor or :class:`~sk_i2m2._lazy.LazyRows`
        (see :func:`check_modality_array`), in ``fitted.modalities_`` order at
        prediction time; missing samples (and left-out modalities) are zeros.
    columns : dict
        Modality -> DataFrame column names, or ``None`` for other arrays.
    present : bool tensor of shape (n_samples, n_modalities) or None
        Which sample has which modality (columns in the order of
        ``tensors``); ``None`` when every sample has all of them.
    """
    if fitted is None:
        n_samples = check_modality_mapping(X, reserved=ESTIMATOR_RESERVED, torch_names=True)
    else:
        n_samples = check_modality_mapping(X, known=fitted.modalities_)
    if fitted is not None:
        encoders = fitted.encoders_
    tensors, columns, rows_present = {}, {}, {}
    for name in X:
        value = X[name]
        embed_texts = getattr((encoders or {}).get(name), "embed_texts", None)
        if embed_texts is not None:
            value = embed_texts(name, value)
        tensors[name], columns[name], rows_present[name] = check_modality_array(name, value)
    if fitted is None:
        for name, rows in rows_present.items():
            if rows is not None and not bool(rows.any()):
                raise ValueError(
                    f"Modality {name!r} is missing (all NaN) in every sample; drop it from X."
                )
    else:
        for name, tensor in tensors.items():
            _check_like_fit(fitted, name, tuple(tensor.shape[1:]), columns[name])
        for name in fitted.modalities_:
            if name not in tensors:  # left out: missing in every sample
                tensors[name] = torch.zeros((n_samples, *fitted.input_shapes_[name]))
                columns[name] = None
                rows_present[name] = torch.zeros(n_samples, dtype=torch.bool)
        tensors = {m: tensors[m] for m in fitted.modalities_}
    if all(rows is None for rows in rows_present.values()):
        return tensors, columns, None
    present = torch.stack(
        [
            torch.ones(n_samples, dtype=torch.bool) if rows_present[m] is None else rows_present[m]
            for m in tensors
        ],
        dim=1,
    )
    empty = torch.nonzero(~present.any(1)).flatten()
    if len(empty):
        raise ValueError(
            f"{len(empty)} sample(s) have no modality (every modality is missing or all "
            f"NaN), first sample {int(empty[0])}; each sample needs at least one of "
            f"{list(tensors)}."
        )
    return tensors, columns, present


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
            problem = (
                f"columns {renamed[:5]} differ" if renamed else "columns are in a different order"
            )
            raise ValueError(
                f"Modality {name!r}: the DataFrame's {problem} from those seen in "
                f"fit. Expected columns {list(fitted_columns)}; select them with "
                "df[expected_columns]."
            )
    elif fitted_columns is not None:
        warnings.warn(
            f"Modality {name!r} has no column names, but it was a DataFrame in fit; "
            "its columns are taken in the order seen in fit.",
            UserWarning,
            stacklevel=6,
        )
    elif columns is not None:
        warnings.warn(
            f"Modality {name!r} is a DataFrame, but it had no column names in fit; "
            "its columns are taken by position.",
            UserWarning,
            stacklevel=6,
        )


def check_modality_array(name, value):
    """One modality as ``(float32 CPU tensor or LazyRows, DataFrame columns or None, present rows)``.

    ``value`` goes through scikit-learn's ``check_array`` (named after the
    modality, at least 2-D, any number of dimensions, at least one sample
    and one feature, cast to float32): integer, boolean, float and object
    arrays of numbers are read as numbers; complex data, strings, dates and
    values beyond the float32 range are refused. pandas nullable dtypes
    (``Float64``, ``Int64``, ``boolean``) are read with ``pd.NA`` as NaN.

    A scipy sparse matrix (any format) stays sparse: it is checked on its
    stored values and kept as a float32 CSR matrix inside a
    :class:`~sk_i2m2._lazy.LazyRows`, densified one batch at a time in
    training and prediction. An array on disk (``numpy.memmap``,
    ``h5py.Dataset``, ``zarr`` array) and a :class:`~sk_i2m2.FileModality`
    are read in chunks of rows for the same checks and kept as a
    ``LazyRows`` over the source, which batches read from again.

    Infinite values are refused, and so is NaN, except in a sample whose
    values in this modality are all NaN: that sample misses the modality.
    Its row is set to zeros (when read, for a ``LazyRows``) and ``present``
    (a bool tensor of shape ``(n_samples,)``, ``None`` when no sample misses
    the modality) marks it False.
    """
    if isinstance(value, FileModality) or is_on_disk(value):
        return _check_in_chunks(name, value)
    columns = None
    if isinstance(value, pd.DataFrame):
        for column, dtype in value.dtypes.items():
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
                raise TypeError(
                    f"Modality {name!r} has non-numeric column {column!r} (dtype "
                    f"{dtype}); encode it first, e.g. with "
                    f"PerModality({{{name!r}: ColumnTransformer(...)}})."
                )
        columns = np.asarray(value.columns, dtype=object)
    elif isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # numpy has no bfloat16
        value = value.cpu().resolve_conj().resolve_neg().numpy()
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "USVmM":
        # check_array would parse strings of digits as numbers.
        raise TypeError(
            f"Modality {name!r} has dtype {dtype} ({type(value).__name__}); numeric "
            "values (float, int or bool) are required."
        )
    try:
        # Values beyond float32 become inf in the cast and are reported below.
        with np.errstate(over="ignore"):
            array = check_array(
                value,
                accept_sparse=True,
                dtype=np.float32,
                ensure_all_finite=False,
                allow_nd=True,
                input_name=name,
            )
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Modality {name!r}: {exc}") from exc
    if 0 in array.shape[1:]:  # check_array counts features of 2-D arrays only
        raise ValueError(
            f"Modality {name!r}: Found array with 0 feature(s) (shape="
            f"{tuple(array.shape)}) while a minimum of 1 is required."
        )
    if sp.issparse(array):
        return _check_sparse(name, array)
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        # A read-only input (a memory map, or a DataFrame's values under
        # pandas' copy-on-write) is shared, not copied: the tensor is only
        # read, never written in place.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(array)
    present = None
    # Finiteness in one pass with no mask the size of the data: a float64
    # sum of float32 values cannot overflow, so it is finite exactly when
    # every value is. check_array's own check (ensure_all_finite) would be a
    # second pass; scikit-learn's assert_all_finite only runs, for its
    # message, when this one finds a problem.
    if not math.isfinite(tensor.sum(dtype=torch.float64)):
        rows = tensor.view(len(tensor), -1)
        missing = rows.isnan().all(1)
        if not bool(torch.isfinite(rows[~missing]).all()):
            _raise_non_finite(name, rows.numpy(), missing.numpy())
        tensor = tensor.masked_fill(missing.view(-1, *([1] * (tensor.dim() - 1))), 0.0)
        present = ~missing
    return tensor, columns, present


def _raise_non_finite(name, rows, missing, offset=0):
    """Report the non-finite values of ``rows`` outside the ``missing`` samples.

    ``rows`` is ``(n, n_values)``; ``offset`` is the sample number of its first row.
    """
    observed = np.flatnonzero(~missing)
    bad = ~np.isfinite(rows[observed])
    first = offset + int(observed[np.flatnonzero(bad.any(axis=1))[0]])
    _raise_bad_values(name, rows[observed], int(bad.sum()), first)


def _raise_bad_values(name, values, n_bad, first):
    """Report ``n_bad`` non-finite ``values`` (of observed samples), the first in sample ``first``."""
    try:
        assert_all_finite(values, allow_nan=True, input_name=name)
    except ValueError as exc:  # infinity, or a value past the float32 range
        raise ValueError(f"Modality {name!r}: {exc} First in sample {first}.") from None
    raise ValueError(
        f"Modality {name!r} contains {n_bad} NaN value(s) (first in sample "
        f"{first}); "
        "impute or drop them first (e.g. sklearn.impute.SimpleImputer). A sample "
        "whose values in a modality are all NaN counts as missing that modality."
    )


def _check_sparse(name, array):
    """A checked float32 sparse matrix as ``(LazyRows, None, present)``.

    The checks run on the stored values only; the rows of samples missing
    the modality (every value stored and NaN) are emptied, i.e. zeros.
    """
    # A copy: the user's matrix may share its arrays, and they change below.
    csr = sp.csr_matrix(array, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    present = None
    if not math.isfinite(csr.data.sum(dtype=np.float64)):
        missing = missing_rows(csr)
        row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        observed = ~missing[row_of]
        bad = observed & ~np.isfinite(csr.data)
        if bad.any():
            first = int(row_of[np.flatnonzero(bad)[0]])
            _raise_bad_values(name, csr.data[observed], int(bad.sum()), first)
        csr.data[~observed] = 0.0
        csr.eliminate_zeros()
        present = torch.from_numpy(~missing)
    return LazyRows(source_of(csr)), None, present


def _check_in_chunks(name, value):
    """An array on disk or a FileModality, checked in chunks, as ``(LazyRows, None, present)``."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind not in "biuf":
        raise TypeError(
            f"Modality {name!r} has dtype {dtype} ({type(value).__name__}); numeric "
            "values (float, int or bool) are required."
        )
    source = source_of(value)
    n = len(source)
    if n == 0:
        raise ValueError(
            f"Modality {name!r}: Found array with 0 sample(s) (shape=(0, ...)) while a "
            "minimum of 1 is required."
        )
    try:
        rows = LazyRows(source)
        shape = rows.shape
        if len(shape) < 2:
            raise ValueError(
                f"Expected 2D array, got 1D array instead (shape={shape}); give each "
                "sample at least one feature."
            )
        if 0 in shape[1:]:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required."
            )
        missing = np.zeros(n, dtype=bool)
        start = 0
        for chunk in rows.chunks():
            flat = chunk.numpy().reshape(len(chunk), -1)
            # numpy's float64 sum is buffered: no float64 copy of the chunk.
            if not math.isfinite(np.sum(flat, dtype=np.float64)):
                nan_rows = np.isnan(flat).all(axis=1)
                if not np.isfinite(flat[~nan_rows]).all():
                    _raise_non_finite(name, flat, nan_rows, offset=start)
                missing[start : start + len(chunk)] = nan_rows
            start += len(chunk)
    except ValueError as exc:
        if str(exc).startswith(f"Modality {name!r}"):
            raise
        raise ValueError(f"Modality {name!r}: {exc}") from exc
    except TypeError as exc:
        raise TypeError(f"Modality {name!r}: {exc}") from exc
    if not missing.any():
        return rows, None, None
    return LazyRows(source, zero_nan=True), None, torch.from_numpy(~missing)


def as_python(value):
    """A numpy scalar as the Python value, so that messages show ``1``, not ``np.int64(1)``."""
    return value.item() if isinstance(value, np.generic) else value
