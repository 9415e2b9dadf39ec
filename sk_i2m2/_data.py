"""Multi-modal containers and the batch path used for training and inference."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

# Private, with no public equivalent (sklearn.utils.safe_indexing was removed):
# the row indexing scikit-learn uses for arrays, DataFrames, sparse matrices
# and lists.
from sklearn.utils import _safe_indexing
from skorch.dataset import Dataset as SkorchDataset

from ._lazy import FileModality, LazyRows, is_on_disk, rows_on_disk
from ._validation import check_modality_mapping

__all__ = ["ModalityDict"]


def _describe(value):
    kind = type(value).__name__
    if not hasattr(value, "shape"):
        return f"{kind}[{len(value)}]" if hasattr(value, "__len__") else kind
    shape = tuple(value.shape)
    dtype = getattr(value, "dtype", None)
    if hasattr(value, "iloc"):
        return f"{kind}{shape}"
    return f"{kind}{shape} {dtype}" if dtype is not None else f"{kind}{shape}"


class ModalityDict(dict):
    """A dict of modalities that scikit-learn can index by rows.

    scikit-learn counts the keys of a plain ``dict`` as samples, so a plain
    dict cannot go through ``cross_val_score``, ``GridSearchCV`` or
    ``train_test_split``. ``ModalityDict`` behaves like the dict it wraps
    for string keys and is indexed by *rows* for anything else: integer
    arrays, boolean masks and slices select the same samples from every
    modality (numpy arrays, torch tensors and pandas DataFrames alike; a
    DataFrame is sliced with ``iloc``).

    Parameters
    ----------
    *args, **kwargs
        As for ``dict``: modality name -> array-like with samples on the
        first axis (a list works too, e.g. the texts of a modality that a
        :class:`~sk_i2m2.PerModality` transformer turns into features). All
        modalities must have the same number of samples; names are
        non-empty strings without ``"__"`` (it separates nested parameter
        names, as in a ``Pipeline``'s step names).

    Attributes
    ----------
    shape : tuple of int
        ``(n_samples,)``, so that ``sklearn.utils._num_samples`` and
        ``len`` count samples, not modalities.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_i2m2 import ModalityDict
    >>> X = ModalityDict(image=np.zeros((4, 1, 8, 8)), tabular=np.ones((4, 3)))
    >>> len(X), X.shape
    (4, (4,))
    >>> X[[0, 2]]["tabular"].shape
    (2, 3)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._n_samples = check_modality_mapping(dict(self), allow_empty=True)

    def __setitem__(self, name, value):
        entries = dict(self)
        entries[name] = value
        self._n_samples = check_modality_mapping(entries, allow_empty=True)
        super().__setitem__(name, value)

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        # sklearn's _safe_indexing indexes array-likes as ``X[key, ...]``.
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]
        if isinstance(key, numbers.Integral):
            return {name: index_rows(v, key) for name, v in self.items()}
        return ModalityDict({name: index_rows(v, key) for name, v in self.items()})

    def __len__(self):
        return 0 if self._n_samples is None else self._n_samples

    @property
    def shape(self):
        return (len(self),)

    @property
    def n_modalities(self):
        """Number of modalities (``len`` counts samples)."""
        return dict.__len__(self)

    def copy(self):
        return ModalityDict(dict(self))

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __repr__(self):
        parts = ", ".join(f"{name}: {_describe(v)}" for name, v in self.items())
        return f"ModalityDict({parts})"


def index_rows(value, key):
    """Rows ``key`` (integers, a boolean mask or a slice) of one modality."""
    if isinstance(value, FileModality):
        return value[key]
    if is_on_disk(value):  # memmap, HDF5, zarr: the rows stay on disk
        return rows_on_disk(value, key)
    if isinstance(value, torch.Tensor):
        if isinstance(key, slice) or isinstance(key, numbers.Integral):
            return value[key]
        index = torch.as_tensor(np.asarray(key))
        if index.dtype == torch.bool:
            return value[index.to(value.device)]
        return value.index_select(0, index.to(value.device, torch.long))
    return _safe_indexing(value, key, axis=0)


class ModalityTensorDataset(SkorchDataset):
    """Modalities and targets held as tensors, sliced a whole batch at a time.

    A skorch ``Dataset`` (``X`` a dict of tensors, ``y`` a tensor), so that
    skorch's scoring callbacks can take the data and targets out of it.
    ``__getitem__`` exists so that any torch ``DataLoader`` still works, but
    :class:`BatchSlicer` never calls it: per-sample indexing plus collation
    costs several times the forward/backward pass of small experts.
    """

    # skorch's Dataset.__init__ converts and checks its inputs; these are
    # already tensors of one length, so it is not called.
    def __init__(self, X, y=None):
        self.X = X
        self.y = y
        self._n = len(next(iter(X.values())))

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        Xi = {name: t[i] for name, t in self.X.items()}
        return Xi, (self.y[i] if self.y is not None else torch.zeros(()))

    def take(self, index):
        """Rows ``index`` (a slice or a 1-D long tensor) of every modality."""
        if isinstance(index, slice):
            Xb = {name: t[index] for name, t in self.X.items()}
            yb = self.y[index] if self.y is not None else None
        else:
            Xb = {name: t.index_select(0, index) for name, t in self.X.items()}
            yb = self.y.index_select(0, index) if self.y is not None else None
        return Xb, yb


class _RowBatches:
    """What the batch iterators share: the rows, their order, the batches of a shard.

    Subclasses name the ``dataset_type`` they read and implement
    ``__iter__``; see :class:`BatchSlicer` for the parameters.
    """

    dataset_type = None

    def __init__(
        self,
        dataset,
        batch_size,
        shuffle=False,
        generator=None,
        device=None,
        drop_singleton=None,
        num_shards=1,
        shard=0,
    ):
        if isinstance(dataset, torch.utils.data.Subset):
            self.dataset = dataset.dataset
            self.rows = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        else:
            self.dataset = dataset
            self.rows = None
        if not isinstance(self.dataset, self.dataset_type):
            raise TypeError(
                f"{type(self).__name__} needs a {self.dataset_type.__name__}; "
                f"got {type(self.dataset).__name__}."
            )
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device) if device is not None else self._data_device()
        self.drop_singleton = shuffle if drop_singleton is None else drop_singleton
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard must be in [0, num_shards={num_shards}); got {shard}.")
        self.num_shards = num_shards
        self.shard = shard

    def _data_device(self):
        return torch.device("cpu")

    def _n_rows(self):
        return len(self.rows) if self.rows is not None else len(self.dataset)

    def _n_batches(self):
        return _n_batches(self._n_rows(), self.batch_size, self.drop_singleton)

    def __len__(self):
        return math.ceil(self._n_batches() / self.num_shards)

    def _order(self):
        """This epoch's order of the dataset's rows (a CPU tensor), ``None`` for 0..n-1."""
        if self.shuffle:
            perm = torch.randperm(self._n_rows(), generator=self.generator)
            return self.rows[perm] if self.rows is not None else perm
        return self.rows

    def _bounds(self):
        """``(start, stop)`` in the epoch's order of each batch of this shard."""
        n, n_batches = self._n_rows(), self._n_batches()
        for i in range(len(self)):
            b = (self.shard + i * self.num_shards) % n_batches
            yield b * self.batch_size, min((b + 1) * self.batch_size, n)


class BatchSlicer(_RowBatches):
    """Iterate over a :class:`ModalityTensorDataset` in whole-tensor batches.

    Drop-in for skorch's ``iterator_train``/``iterator_valid`` (it takes the
    same ``batch_size``/``shuffle`` arguments as a ``DataLoader``). It accepts
    the dataset itself or a ``torch.utils.data.Subset`` of it, as produced by
    skorch's ``ValidSplit``.

    Data already on ``device`` is sliced in place (no host-device traffic);
    data on the host is copied one batch at a time to ``device`` through
    pinned memory with a non-blocking copy.

    Parameters
    ----------
    dataset : ModalityTensorDataset or torch.utils.data.Subset
    batch_size : int
    shuffle : bool, default=False
        Draw a new permutation of the rows every epoch.
    generator : torch.Generator, optional
        Source of the permutations (for reproducible shuffling).
    device : str or torch.device, optional
        Where batches are delivered; defaults to where the data lives.
    drop_singleton : bool, default=None
        Drop a final batch of a single row (BatchNorm cannot train on one
        sample). Defaults to ``shuffle``, i.e. only while training.
    num_shards, shard : int, default=1, 0
        For data-parallel training: this process yields batches ``shard``,
        ``shard + num_shards``, ... of the epoch, which the processes
        order alike when their ``generator`` is seeded alike. Every shard
        yields ``ceil(n_batches / num_shards)`` batches, the last shards
        starting over from the first batches when the batches do not
        divide evenly, as every process must take the same number of steps.
    """

    dataset_type = ModalityTensorDataset

    def __init__(self, dataset, batch_size, **kwargs):
        super().__init__(dataset, batch_size, **kwargs)
        data_device = self._data_device()
        # "cuda" and "cuda:0" name the same device: compare types and given indices.
        self.stream = not (
            self.device.type == data_device.type
            and (
                self.device.index is None
                or data_device.index is None
                or self.device.index == data_device.index
            )
        )

    def _data_device(self):
        return next(iter(self.dataset.X.values())).device

    def __iter__(self):
        order = self._order()
        if order is not None:
            order = order.to(self._data_device())
        for start, stop in self._bounds():
            index = slice(start, stop) if order is None else order[start:stop]
            Xb, yb = self.dataset.take(index)
            if self.stream:
                Xb = {k: _to_device(v, self.device) for k, v in Xb.items()}
                yb = _to_device(yb, self.device) if yb is not None else None
            yield Xb, yb


def _n_batches(n, batch_size, drop_singleton):
    n_batches = math.ceil(n / batch_size)
    if drop_singleton and n > 1 and n % batch_size == 1:
        n_batches -= 1
    return n_batches


def _to_device(tensor, device):
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class LazyModalityDataset(SkorchDataset):
    """Modalities of which some are :class:`~sk_i2m2._lazy.LazyRows`, read a batch at a time.

    ``dataset[positions]`` returns the rows ``positions`` (a whole batch) of
    every modality as tensors, so a ``DataLoader`` with automatic batching
    off (``batch_size=None``) and a sampler of index batches reads each
    batch in one go, in worker processes if asked.
    """

    def __init__(self, X, y=None):
        self.X = X
        self.y = y
        self._n = len(next(iter(X.values())))
        # Workers pay off for costly loaders (FileModality); sparse and
        # on-disk arrays are read in the main process.
        self.num_workers = max(
            (v.num_workers for v in X.values() if isinstance(v, LazyRows)), default=0
        )

    def __len__(self):
        return self._n

    def __getitem__(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        index = torch.from_numpy(positions)
        Xb = {
            name: v.read(positions) if isinstance(v, LazyRows) else v.index_select(0, index)
            for name, v in self.X.items()
        }
        return Xb, (self.y.index_select(0, index) if self.y is not None else None)


class LazyBatchLoader(_RowBatches):
    """:class:`BatchSlicer`'s counterpart for a :class:`LazyModalityDataset`.

    Same arguments, same batches in the same order (one permutation per
    epoch from ``generator``), but each batch is read by a
    ``torch.utils.data.DataLoader``: the dataset's ``num_workers`` worker
    processes, pinned memory when ``device`` is CUDA. Rows are read in
    increasing order within a batch (as HDF5 requires) and handed over in
    the order drawn.
    """

    dataset_type = LazyModalityDataset

    def __iter__(self):
        order = self._order()
        if order is None:
            order = torch.arange(self._n_rows())
        batches = [order[start:stop].numpy() for start, stop in self._bounds()]
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=None,
            sampler=batches,
            num_workers=self.dataset.num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: a DataLoader draws a worker seed per epoch,
            # which must not shift the global stream (dropout, as in the fast path).
            generator=torch.Generator(),
        )
        for Xb, yb in loader:
            if self.device.type != "cpu":
                Xb = {k: v.to(self.device, non_blocking=True) for k, v in Xb.items()}
                yb = yb.to(self.device, non_blocking=True) if yb is not None else None
            yield Xb, yb


def modality_dataset(X, y=None):
    """The dataset for modality tensors ``X``: lazy when one of them is :class:`LazyRows`."""
    if any(isinstance(v, LazyRows) for v in X.values()):
        return LazyModalityDataset(X, y)
    return ModalityTensorDataset(X, y)


def iterator_for(dataset):
    """The batch iterator class for ``dataset``: the fast slicer unless it is lazy."""
    return LazyBatchLoader if isinstance(dataset, LazyModalityDataset) else BatchSlicer
