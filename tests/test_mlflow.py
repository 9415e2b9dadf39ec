"""sk_i2m2.io.log_model: an MLflow pyfunc round trip with no pickle and no server."""

import numpy as np
import pandas as pd
import pytest

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.io import log_model, to_modalities

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("skops")

N = 36


def _data(seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(N) % 2
    table = pd.DataFrame({"age": 60 + 10 * rng.randn(N) + 5 * y, "volume": rng.randn(N)})
    image = (rng.randn(N, 1, 8, 8) + y[:, None, None, None]).astype(np.float32)
    return ModalityDict(clinical=table, image=image), y


def test_pipeline_round_trip_through_a_sqlite_tracking_store(tmp_path, monkeypatch):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _data()
    pipe = Pipeline(
        [
            ("prep", PerModality({"clinical": StandardScaler()})),
            ("clf", I2M2Classifier(max_epochs=1, cv=None, random_state=0)),
        ]
    ).fit(X, y)
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():  # the store's default experiment
            info = log_model(pipe, "model", predict_method="predict_proba")
        loaded = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    expected = pipe.predict_proba(X)
    np.testing.assert_array_equal(loaded.predict(dict(X)), expected)
    # A DataFrame: "<modality>__<column>" columns and one array per cell.
    frame = pd.DataFrame({f"clinical__{c}": X["clinical"][c] for c in X["clinical"]})
    frame["image"] = list(X["image"])
    np.testing.assert_array_equal(loaded.predict(frame), expected)


def test_to_modalities_groups_columns_and_stacks_cells():
    frame = pd.DataFrame({"tab__a": [1.0, 2.0], "tab__b": [3.0, 4.0], "seq": [[1, 2], [3, 4]]})
    X = to_modalities(frame)
    assert list(X["tab"].columns) == ["a", "b"] and X["seq"].shape == (2, 2)
    assert to_modalities({"v": [[1, 2]]})["v"].shape == (1, 2)
    with pytest.raises(ValueError, match="Modality 'tab' is given both"):
        to_modalities(pd.DataFrame({"tab": [[1.0]], "tab__a": [1.0]}))
    with pytest.raises(TypeError, match="got list"):
        to_modalities([1, 2])
