"""Modalities whose rows are read one batch at a time instead of held as one tensor.

A scipy sparse matrix, an array on disk (``numpy.memmap``, ``h5py.Dataset``,
``zarr`` array) and a :class:`FileModality` are validated in chunks and kept
as a :class:`LazyRows`: training and prediction read (and densify) only the
rows of the current batch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "FileModality",
    "LazyRows",
    "RowsOnDisk",
    "is_on_disk",
    "rows_on_disk",
    "take",
    "materialize",
]

#: Bytes of float32 rows read at once by chunked passes (validation, statistics).
#: Small enough that their float64 temporaries stay a small share of memory.
CHUNK_BYTES = 4 * 2**20


class FileModality:
    """A modality stored as one file per sample, read a batch at a time.

    Training and prediction call ``loader`` on the files of the current
    batch only, so the cohort need not fit in memory (e.g. images or NIfTI
    volumes on disk). Validation and input statistics read the files in
    chunks, once each, before training.

    Parameters
    ----------
    paths : sequence of str or path-like
        One file per sample, in the order of the other modalities and ``y``.
    loader : callable
        ``loader(path)`` returns one sample as a numeric array-like of shape
        ``sample_shape``; all its values NaN marks the sample as missing the
        modality. With ``num_workers > 0`` it runs in worker processes, so it
        must be picklable under the ``spawn`` start method (a module-level
        function, not a lambda).
    sample_shape : tuple of int or None, default=None
        Shape of one sample; ``None`` loads the first file to learn it.
    num_workers : int, default=0
        Worker processes that load batches (``torch.utils.data.DataLoader``'s
        ``num_workers``); 0 loads in the main process. Worth it when decoding
        a file costs more than a training step. When several modalities set
        it, batches are loaded with the largest value.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sk_i2m2 import FileModality
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.npy") for i in range(4)]
    >>> for i, path in enumerate(paths):
    ...     np.save(path, np.full((1, 8, 8), i, dtype=np.float32))
    >>> scans = FileModality(paths, np.load)
    >>> len(scans), scans.sample_shape
    (4, (1, 8, 8))
    >>> scans[[0, 2]].paths == [paths[0], paths[2]]
    True
    """

    def __init__(self, paths, loader, *, sample_shape=None, num_workers=0):
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError("paths must be a sequence of paths, one per sample; got one path.")
        if not callable(loader):
            raise TypeError(f"loader must be callable; got {type(loader).__name__}.")
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise ValueError(f"num_workers must be an int >= 0; got {num_workers!r}.")
        self.paths = list(paths)
        self.loader = loader
        self._sample_shape = None if sample_shape is None else tuple(int(s) for s in sample_shape)
        self.num_workers = num_workers

    @property
    def sample_shape(self):
        """Shape of one sample (loads the first file when not given)."""
        if self._sample_shape is None and self.paths:
            self._sample_shape = np.shape(self.loader(self.paths[0]))
        return self._sample_shape

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        """One sample (an int) or a :class:`FileModality` of the rows ``key``."""
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key]))[0]
        paths = np.asarray(self.paths, dtype=object)[key]
        return FileModality(
            list(paths),
            self.loader,
            sample_shape=self._sample_shape,
            num_workers=self.num_workers,
        )

    def read(self, rows):
        """Samples ``rows`` (integers) as one float32 array."""
        out = np.empty((len(rows), *self.sample_shape), dtype=np.float32)
        for k, row in enumerate(rows):
            path = self.paths[row]
            sample = np.asarray(self.loader(path))
            path = os.fspath(path) if isinstance(path, os.PathLike) else path
            if sample.dtype.kind not in "biuf":
                raise TypeError(
                    f"loader({path!r}) returned dtype {sample.dtype}; numeric values "
                    "(float, int or bool) are required."
                )
            if sample.shape != self.sample_shape:
                raise ValueError(
                    f"loader({path!r}) returned a sample of shape {sample.shape}, but "
                    f"samples have shape {self.sample_shape}."
                )
            with np.errstate(over="ignore"):  # beyond float32: inf, refused by validation
                out[k] = sample
        return out

    def __repr__(self):
        return f"FileModality({len(self)} files, loader={getattr(self.loader, '__name__', '?')})"


def is_on_disk(value):
    """Whether ``value`` is an array read in chunks: a memmap, HDF5, zarr or similar array.

    Anything with a numpy ``dtype``, a ``shape`` and row indexing that is not
    an in-memory array (numpy, torch, pandas, scipy sparse) counts.
    """
    if isinstance(value, np.memmap):
        return True
    if isinstance(value, (np.ndarray, torch.Tensor)) or sp.issparse(value):
        return False
    return (
        isinstance(getattr(value, "dtype", None), np.dtype)
        and isinstance(getattr(value, "shape", None), tuple)
        and hasattr(value, "__getitem__")
        and not hasattr(value, "iloc")
    )


class _SparseSource:
    """Rows of a float32 scipy CSR matrix."""

    num_workers = 0

    def __init__(self, csr):
        self.csr = csr
        self.sample_shape = (csr.shape[1],)

    def __len__(self):
        return self.csr.shape[0]

    def read(self, rows):
        return self.csr[rows].toarray()


def _read_sorted(array, rows):
    """Rows ``rows`` (increasing, unique) of an array on disk, as numpy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return np.asarray(array[int(rows[0]) : int(rows[-1]) + 1])  # one contiguous read
    if hasattr(array, "oindex"):  # zarr
        return np.asarray(array.oindex[rows])
    return np.asarray(array[rows])  # h5py needs increasing indices


class RowsOnDisk:
    """Rows of an array on disk, still on disk.

    What :class:`~sk_i2m2.ModalityDict` returns for rows of such an array
    (e.g. a fold of ``cross_val_score``), so that the fold is read a batch
    at a time too. It has the array's ``dtype``, a ``shape`` and row indexing,
    and ``numpy.asarray`` reads it.
    """

    def __init__(self, array, rows):
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def shape(self):
        return (len(self.rows), *self.array.shape[1:])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]  # as scikit-learn's _safe_indexing asks
        if isinstance(key, (int, np.integer)):
            return np.asarray(self.array[int(self.rows[key])])
        return RowsOnDisk(self.array, self.rows[key])

    def __array__(self, dtype=None, copy=None):
        unique, inverse = np.unique(self.rows, return_inverse=True)
        out = _read_sorted(self.array, unique)[inverse]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self):
        return f"RowsOnDisk({type(self.array).__name__}, shape={self.shape})"


def rows_on_disk(array, key):
    """Rows ``key`` (integers, a boolean mask or a slice) of an array on disk, kept on disk."""
    if isinstance(key, (int, np.integer)):
        return np.asarray(array[int(key)])
    if isinstance(array, RowsOnDisk):
        return array[key]
    return RowsOnDisk(array, np.arange(array.shape[0])[key])


class _ArraySource:
    """Rows of an array on disk, read with increasing indices (as h5py requires)."""

    num_workers = 0

    def __init__(self, array):
        self.array = array
        self.sample_shape = tuple(array.shape[1:])

    def __len__(self):
        return self.array.shape[0]

    def read(self, rows):
        if isinstance(self.array, RowsOnDisk):
            block = np.asarray(self.array[rows])
        else:
            block = _read_sorted(self.array, rows)
        with np.errstate(over="ignore"):
            # A copy even when already float32: a memmap's pages stay read-only.
            return np.array(block, dtype=np.float32)


def source_of(value):
    """The row source of a sparse matrix, an array on disk or a :class:`FileModality`."""
    if isinstance(value, FileModality):
        return value
    if sp.issparse(value):
        return _SparseSource(value)
    return _ArraySource(value)


class LazyRows:
    """Some rows of one modality, read on demand as float32 CPU tensors.

    Parameters
    ----------
    source : row source
        ``len``, ``sample_shape`` and ``read(rows)`` for increasing unique
        integer ``rows``.
    rows : ndarray of int or None, default=None
        Rows of ``source`` this view holds, in order; ``None`` for all.
    zero_nan : bool, default=False
        Replace NaN by 0 when reading: the rows of samples missing the
        modality (validation allows NaN nowhere else).
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, source, rows=None, zero_nan=False):
        self.source = source
        self.rows = rows
        self.zero_nan = zero_nan

    def __len__(self):
        return len(self.source) if self.rows is None else len(self.rows)

    @property
    def shape(self):
        return (len(self), *self.source.sample_shape)

    def dim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return 4 * math.prod(self.shape)

    def __getitem__(self, key):
        """The rows ``key`` (a slice, integers or a boolean mask) as a new view."""
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        positions = np.arange(len(self))[key]
        rows = positions if self.rows is None else self.rows[positions]
        return LazyRows(self.source, rows, self.zero_nan)

    def read(self, positions):
        """Rows at ``positions`` of this view (any order) as one float32 tensor."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        unique, inverse = np.unique(rows, return_inverse=True)
        data = self.source.read(unique)
        if len(unique) != len(rows) or (rows[1:] < rows[:-1]).any():
            data = data[inverse]  # back to the order asked for
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        return tensor.nan_to_num_(nan=0.0) if self.zero_nan else tensor

    def chunks(self, max_bytes=CHUNK_BYTES):
        """Consecutive blocks of rows as tensors, of at most ``max_bytes`` (one row at least)."""
        row_bytes = 4 * math.prod(self.source.sample_shape)
        step = max(1, max_bytes // max(row_bytes, 1))
        for start in range(0, len(self), step):
            yield self.read(np.arange(start, min(start + step, len(self))))

    def sparse(self):
        """The rows as a scipy CSR matrix when the source is sparse, else ``None``."""
        if not isinstance(self.source, _SparseSource):
            return None
        return self.source.csr if self.rows is None else self.source.csr[self.rows]

    @property
    def num_workers(self):
        return self.source.num_workers

    def __repr__(self):
        return f"LazyRows({type(self.source).__name__}, shape={self.shape})"


def take(value, rows):
    """Rows ``rows`` (sorted integers) of a tensor or a :class:`LazyRows`."""
    if isinstance(value, LazyRows):
        return value[rows]
    return value.index_select(0, torch.as_tensor(rows, device=value.device))


def materialize(value):
    """A tensor or a (small) :class:`LazyRows` as a CPU tensor."""
    if isinstance(value, LazyRows):
        return value.read(np.arange(len(value)))
    return value.cpu()
