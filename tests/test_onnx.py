"""sk_i2m2.to_onnx: onnxruntime reproduces predict_proba / predict without torch."""

import json

import numpy as np
import pytest
import torch

import sk_i2m2
from sk_i2m2 import I2M2Classifier, I2M2Regressor

pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

N = 36


def _data(seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(N) % 3
    X = {
        "vector": 50 + 10 * rng.randn(N, 4) + y[:, None],
        "image": (rng.randn(N, 1, 8, 8) + y[:, None, None, None]).astype(np.float32),
        "sequence": (rng.randn(N, 10, 2) + y[:, None, None]).astype(np.float32),
    }
    return X, y


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, session.run(None, {m: np.asarray(v, dtype=np.float32) for m, v in X.items()})


@pytest.mark.parametrize("fusion, cv", [("concat", 2), ("lrtf", None)])
def test_onnxruntime_matches_predict_proba(tmp_path, fusion, cv):
    X, y = _data()
    # Calibrated: one temperature, or with cv=2 a fold ensemble whose experts
    # are weighted (calibration="auto"). The graph holds either.
    clf = I2M2Classifier(fusion=fusion, max_epochs=2, cv=cv, random_state=0).fit(X, y)
    if cv is None:
        assert clf.temperature_ != 1.0
    else:
        assert set(clf.expert_weights_.values()) != {1.0}
    path = sk_i2m2.to_onnx(clf, tmp_path / "model.onnx")
    session, (proba,) = _run(path, X)
    assert [i.name for i in session.get_inputs()] == ["vector", "image", "sequence"]
    assert session.get_inputs()[1].shape == ["batch", 1, 8, 8]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)
    # Any batch size, one sample included.
    one = {m: v[:1] for m, v in X.items()}
    np.testing.assert_allclose(_run(path, one)[1][0], clf.predict_proba(one), atol=1e-5)
    metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(metadata["classes"]) == [0, 1, 2]
    assert json.loads(metadata["modalities"]) == ["vector", "image", "sequence"]


def test_onnxruntime_matches_regressor_mean_and_std(tmp_path):
    X, _ = _data()
    X = {"vector": X["vector"], "image": X["image"]}
    target = 100 + 20 * X["vector"][:, 0]
    reg = I2M2Regressor(max_epochs=2, cv=None, random_state=0).fit(X, target)
    path = sk_i2m2.to_onnx(reg, tmp_path / "reg.onnx")
    session, (mean, std) = _run(path, X)
    assert [o.name for o in session.get_outputs()] == ["mean", "std"]
    expected_mean, expected_std = reg.predict(X, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5, atol=1e-4)


class ValueBranch(torch.nn.Module):
    """Runs in torch, but its Python branch on an input value cannot be traced."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        if x.mean() > 0:
            return self.linear(x)
        return -self.linear(x)


def test_a_module_that_does_not_trace_is_named(tmp_path):
    X, y = _data()
    X = {"vector": X["vector"], "image": X["image"]}
    clf = I2M2Classifier(
        encoders={"vector": ValueBranch}, max_epochs=1, cv=None, random_state=0
    ).fit(X, y)
    with pytest.raises(
        ValueError, match=r"encoder of modality 'vector' \(ValueBranch\) does not trace"
    ):
        sk_i2m2.to_onnx(clf, tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="export its last step"):
        sk_i2m2.to_onnx(object(), tmp_path / "model.onnx")
