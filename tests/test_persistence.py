"""Pickle, joblib and save/load round trips give the same predictions."""

import io
import json
import pathlib
import pickle
import re

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import requires_cuda
from sklearn.utils.validation import check_is_fitted

import sk_i2m2
from sk_i2m2 import I2M2Classifier
from sk_i2m2.encoders import MLPEncoder, ModuleEncoder
from sk_i2m2.exceptions import ModelFileError
from sk_i2m2.fusion import FusionSpec, LowRankTensorFusion

N = 40


def _data(seed=0):
    rng = np.random.RandomState(seed)
    y = np.array(["low", "mid", "high"])[np.arange(N) % 3]
    shift = (np.arange(N) % 3)[:, None]
    X = {
        "clinical": pd.DataFrame(rng.randn(N, 3) + shift, columns=["age", 7, "flag"]),
        "img": (rng.randn(N, 1, 8, 8) + shift[:, :, None, None]).astype(np.float32),
    }
    return X, y


class TinyCNN(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, width, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    clf = I2M2Classifier(
        fusion=LowRankTensorFusion(rank=2, out_features=8),
        encoders={"clinical": MLPEncoder(hidden_sizes=(16,))},
        max_epochs=2,
        lr=3e-3,
        optimizer=torch.optim.Adam,
        class_weight={"high": 2.0},
        random_state=0,
        device="cpu",  # bit-identical comparisons; CUDA has its own test below
    )
    return clf.fit(X, y)


def _assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    for name, proba in a.expert_proba(X).items():
        np.testing.assert_array_equal(b.expert_proba(X)[name], proba)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_pickle_and_joblib_round_trip(fitted):
    X, _ = _data()
    _assert_same_predictions(fitted, pickle.loads(pickle.dumps(fitted)), X)
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    _assert_same_predictions(fitted, joblib.load(buffer), X)


def test_save_load_round_trip(fitted, tmp_path):
    X, y = _data()
    fitted.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = I2M2Classifier.load(tmp_path / "model")
    check_is_fitted(loaded)
    _assert_same_predictions(fitted, loaded, X)
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.classes_.dtype == fitted.classes_.dtype
    assert loaded.modalities_ == fitted.modalities_
    assert loaded.input_shapes_ == fitted.input_shapes_
    assert list(loaded.feature_names_in_["clinical"]) == ["age", 7, "flag"]
    assert loaded.expert_names_ == fitted.expert_names_
    assert loaded.pretrain_net_ is None and loaded.finetune_net_ is None
    assert repr(loaded.fusion_) == repr(fitted.fusion_)
    assert repr(loaded.encoders_) == repr(fitted.encoders_)
    # The parameters come back too: refitting gives the same model as fitting.
    assert repr(loaded) == repr(fitted)
    assert loaded.get_params()["optimizer"] is torch.optim.Adam
    refit = loaded.fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(X), fitted.predict_proba(X))


def test_load_unpickles_nothing(fitted, tmp_path, monkeypatch):
    X, _ = _data()
    fitted.save(tmp_path)
    json.loads((tmp_path / "config.json").read_text())

    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    _assert_same_predictions(fitted, I2M2Classifier.load(str(tmp_path)), X)


def test_any_torch_load_uses_weights_only():
    package = pathlib.Path(sk_i2m2.__file__).parent
    for path in package.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, (path, call)


def test_custom_module_encoder_is_passed_again_at_load(tmp_path):
    X, y = _data()
    frozen = ModuleEncoder(TinyCNN(4), trainable=False, standardize=True)
    # The class (or a factory) is enough at load: trainable/standardize are in the file.
    for at_fit, at_load in [(TinyCNN, TinyCNN), (frozen, lambda: TinyCNN(4))]:
        clf = I2M2Classifier(encoders={"img": at_fit}, max_epochs=1, random_state=0).fit(X, y)
        clf.save(tmp_path)
        with pytest.raises(
            ValueError,
            match=r"Modality 'img' used a custom torch module "
            r"encoder \(.*TinyCNN\).*encoders=\{'img'",
        ):
            I2M2Classifier.load(tmp_path)
        with pytest.raises(ValueError, match="encoders names modality 'clinical'"):
            I2M2Classifier.load(tmp_path, encoders={"img": at_load, "clinical": at_load})
        loaded = I2M2Classifier.load(tmp_path, encoders={"img": at_load})
        assert loaded.encoders_["img"].trainable == clf.encoders_["img"].trainable
        _assert_same_predictions(clf, loaded, X)
    # A module of another architecture does not fit the saved weights.
    with pytest.raises(ValueError, match="do not fit the model rebuilt"):
        I2M2Classifier.load(tmp_path, encoders={"img": lambda: TinyCNN(5)})


def test_unstorable_parameters_warn_and_custom_fusion_is_refused(fitted, tmp_path):
    X, y = _data()
    from skorch.callbacks import EpochTimer

    clf = I2M2Classifier(
        max_epochs=1, callbacks=[EpochTimer()], random_state=np.random.RandomState(0)
    ).fit(X, y)
    with pytest.warns(UserWarning, match=r"\['callbacks', 'random_state'\] cannot be stored"):
        clf.save(tmp_path)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.callbacks is None and loaded.random_state is None
    _assert_same_predictions(clf, loaded, X)

    class MyFusion(FusionSpec):
        hidden_size, dropout = 8, 0.0

        def build(self, in_features):
            return LowRankTensorFusion(rank=1, out_features=4).build(in_features)

    custom = I2M2Classifier(fusion=MyFusion(), max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(TypeError, match="MyFusion is not a built-in encoder or fusion spec"):
        custom.save(tmp_path / "custom")


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        I2M2Classifier.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is not an sk-i2m2 model"):
        I2M2Classifier.load(tmp_path)


def _corrupt_truncated_config(path):
    text = (path / "config.json").read_text()
    (path / "config.json").write_text(text[: len(text) // 2])


def _corrupt_truncated_weights(path):
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])


def _corrupt_missing_fitted_key(path):
    config = json.loads((path / "config.json").read_text())
    del config["fitted"]["classes_"]
    (path / "config.json").write_text(json.dumps(config))


def _corrupt_edited_shapes(path):
    config = json.loads((path / "config.json").read_text())
    shapes = config["fitted"]["input_shapes_"]
    name = next(iter(shapes))
    shapes[name] = {"__tuple__": [value + 1 for value in shapes[name]["__tuple__"]]}
    (path / "config.json").write_text(json.dumps(config))


def _corrupt_foreign_json(path):
    (path / "config.json").write_text(json.dumps([1, 2, 3]))


def _corrupt_binary_config(path):
    (path / "config.json").write_bytes(bytes(range(256)))


@pytest.mark.parametrize(
    "corrupt, file",
    [
        (_corrupt_truncated_config, "config.json"),
        (_corrupt_truncated_weights, "model.safetensors"),
        (_corrupt_missing_fitted_key, "config.json"),
        (_corrupt_edited_shapes, "model.safetensors"),
        (_corrupt_foreign_json, "config.json"),
        (_corrupt_binary_config, "config.json"),
    ],
)
def test_damaged_model_files_raise_model_file_error_naming_the_file(
    fitted, tmp_path, corrupt, file
):
    fitted.save(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(ModelFileError, match=re.escape(str(tmp_path / file))):
        I2M2Classifier.load(tmp_path)


def test_model_saved_for_cuda_loads_on_cpu(fitted, tmp_path, monkeypatch):
    # What a CUDA-trained model's files hold: CPU tensors and device "cuda".
    X, _ = _data()
    fitted.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["params"]["device"] = "cuda"
    config["fitted"]["device_"] = {"__device__": "cuda:0"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.device_ == torch.device("cpu") and loaded.device == "cuda"
    _assert_same_predictions(fitted, loaded, X)
    with pytest.raises(ValueError, match="CUDA is not available"):
        I2M2Classifier.load(tmp_path, device="cuda")


@requires_cuda
def test_cuda_trained_model_loads_on_cpu(tmp_path):
    X, y = _data()
    clf = I2M2Classifier(device="cuda", max_epochs=2, random_state=0).fit(X, y)
    clf.save(tmp_path)
    expected = clf.predict_proba(X)
    on_cpu = I2M2Classifier.load(tmp_path, device="cpu")
    assert on_cpu.device_.type == "cpu" and on_cpu.device == "cpu"
    assert next(on_cpu.module_.parameters()).device.type == "cpu"
    # cuDNN convolutions run in TF32 by default: close, not bit-identical.
    np.testing.assert_allclose(on_cpu.predict_proba(X), expected, atol=2e-3)
    on_gpu = I2M2Classifier.load(tmp_path)
    assert next(on_gpu.module_.parameters()).is_cuda
    np.testing.assert_allclose(on_gpu.predict_proba(X), expected, atol=2e-3)
