import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from sk_i2m2 import ModalityDict
from sk_i2m2._data import BatchSlicer, ModalityTensorDataset


def test_modality_dict_rows():
    X = ModalityDict(
        a=np.arange(10).reshape(5, 2),
        t=torch.arange(5.0),
        df=pd.DataFrame({"x": range(5), "y": range(5, 10)}),
    )
    assert len(X) == 5 and X.shape == (5,) and X.n_modalities == 3
    sub = X[np.array([0, 3])]
    assert isinstance(sub, ModalityDict)
    np.testing.assert_array_equal(sub["a"], [[0, 1], [6, 7]])
    assert sub["t"].tolist() == [0.0, 3.0]
    assert sub["df"]["x"].tolist() == [0, 3]  # rows, not columns
    mask = np.array([True, False, True, False, False])
    assert X[mask]["df"]["y"].tolist() == [5, 7]
    assert X[1:3]["t"].tolist() == [1.0, 2.0]
    assert pickle.loads(pickle.dumps(X))["a"].shape == (5, 2)
    assert "a: ndarray(5, 2)" in repr(X)


def test_modality_dict_checks_lengths():
    with pytest.raises(ValueError, match="Modality 'b' has 3 samples"):
        ModalityDict(a=np.zeros((4, 1)), b=np.zeros((3, 1)))


def test_batch_slicer_covers_rows_once_and_drops_singletons():
    ds = ModalityTensorDataset({"a": torch.arange(9.0)[:, None]}, torch.arange(9))
    batches = list(
        BatchSlicer(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    )
    assert [len(yb) for _, yb in batches] == [4, 4]  # a final batch of 1 is dropped
    seen = torch.cat([yb for _, yb in batches])
    assert len(set(seen.tolist())) == 8
    ordered = list(BatchSlicer(ds, batch_size=4))
    assert torch.cat([yb for _, yb in ordered]).tolist() == list(range(9))
    subset = torch.utils.data.Subset(ds, [1, 5, 7])
    ((Xb, yb),) = list(BatchSlicer(subset, batch_size=8))
    assert yb.tolist() == [1, 5, 7] and Xb["a"].squeeze(1).tolist() == [1.0, 5.0, 7.0]


def test_modality_dict_rows_for_scikit_learn():
    from sklearn.model_selection import train_test_split
    from sklearn.utils import _safe_indexing
    from sklearn.utils.validation import _num_samples

    # A DataFrame with a shuffled integer index is still sliced by position.
    df = pd.DataFrame({"x": range(5)}, index=[4, 3, 2, 1, 0])
    X = ModalityDict(df=df, t=torch.arange(5.0), notes=["a", "b", "c", "d", "e"])
    assert _num_samples(X) == 5
    sub = _safe_indexing(X, np.array([0, 1]))
    assert isinstance(sub, ModalityDict) and len(sub) == 2
    assert sub["df"]["x"].tolist() == [0, 1] and sub["notes"] == ["a", "b"]
    mask = np.array([False, True, False, False, True])
    assert X[mask]["t"].tolist() == [1.0, 4.0] and X[mask]["notes"] == ["b", "e"]
    row = X[2]  # one sample: a plain dict of that sample's values
    assert type(row) is dict and row["t"].item() == 2.0 and row["notes"] == "c"
    X_tr, X_te = train_test_split(X, test_size=2, random_state=0)
    assert (len(X_tr), len(X_te)) == (3, 2)
    assert sorted(X_tr["df"]["x"].tolist() + X_te["df"]["x"].tolist()) == list(range(5))
    restored = pickle.loads(pickle.dumps(X))
    assert isinstance(restored, ModalityDict) and len(restored) == 5
    assert isinstance(X.copy(), ModalityDict)
    assert repr(X) == (
        "ModalityDict(df: DataFrame(5, 1), t: Tensor(5,) torch.float32, notes: list[5])"
    )


def test_modality_dict_rejects_non_arrays_and_checks_new_entries():
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="Modality 'a' must be an array-like"):
        ModalityDict(a={"nested": np.zeros(3)})
    with pytest.raises(TypeError, match="Modality 'a' must be an array-like"):
        ModalityDict(a="text")
    with pytest.raises(TypeError, match="Modality names must be strings"):
        ModalityDict({0: np.zeros((3, 1))})
    X = ModalityDict(s=sp.dok_matrix((3, 2)))  # scipy's dok_matrix is a dict with a shape
    assert len(X) == 3
    with pytest.raises(ValueError, match="Modality 'b' has 2 samples"):
        X["b"] = np.zeros((2, 1))
