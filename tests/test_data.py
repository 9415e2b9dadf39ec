import numpy as np
import pandas as pd
import pickle
import pytest
import torch

from sk_i2m2 import ModalityDict
from sk_i2m2._data import BatchSlicer, ModalityTensorDataset


def test_modality_dict_rows():
    X = ModalityDict(a=np.arange(10).reshape(5, 2), t=torch.arange(5.0),
                     df=pd.DataFrame({"x": range(5), "y": range(5, 10)}))
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
    batches = list(BatchSlicer(ds, batch_size=4, shuffle=True,
                               generator=torch.Generator().manual_seed(0)))
    assert [len(yb) for _, yb in batches] == [4, 4]  # a final batch of 1 is dropped
    seen = torch.cat([yb for _, yb in batches])
    assert len(set(seen.tolist())) == 8
    ordered = list(BatchSlicer(ds, batch_size=4))
    assert torch.cat([yb for _, yb in ordered]).tolist() == list(range(9))
    subset = torch.utils.data.Subset(ds, [1, 5, 7])
    (Xb, yb), = list(BatchSlicer(subset, batch_size=8))
    assert yb.tolist() == [1, 5, 7] and Xb["a"].squeeze(1).tolist() == [1.0, 5.0, 7.0]
