"""sk_i2m2.save / sk_i2m2.load of whole pipelines, without pickle (skops + safetensors)."""

import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import requires_cuda
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import sk_i2m2
from sk_i2m2 import I2M2Classifier, I2M2Regressor, ModalityDict, PerModality
from sk_i2m2.exceptions import ModelFileError

pytest.importorskip("skops")

N = 48


def _data(seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(N) % 3
    table = pd.DataFrame(
        {
            "age": 60 + 10 * rng.randn(N) + 5 * y,
            "sex": rng.choice(["f", "m"], N),
            "volume": 3000 + 100 * rng.randn(N),
        }
    )
    image = (rng.randn(N, 1, 8, 8) + y[:, None, None, None]).astype(np.float32)
    return ModalityDict(clinical=table, image=image), np.array(["a", "b", "c"])[y]


def _pipeline(**params):
    table = ColumnTransformer(
        [("num", StandardScaler(), ["age", "volume"]), ("cat", OneHotEncoder(), ["sex"])]
    )
    clf = I2M2Classifier(max_epochs=2, cv=None, device="cpu", random_state=0, **params)
    return Pipeline([("prep", PerModality({"clinical": table})), ("clf", clf)])


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return _pipeline().fit(X, y)


def test_pipeline_round_trip_is_exact_and_unpickles_nothing(fitted, tmp_path, monkeypatch):
    X, _ = _data()
    sk_i2m2.save(fitted, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "pipeline.skops",
        "sk-i2m2-pipeline.json",
        "step-1",
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = sk_i2m2.load(tmp_path / "model")
    assert isinstance(loaded, Pipeline) and [n for n, _ in loaded.steps] == ["prep", "clf"]
    assert isinstance(loaded[0], PerModality) and isinstance(loaded[-1], I2M2Classifier)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    # Saving did not touch the fitted pipeline.
    assert isinstance(fitted[-1], I2M2Classifier)


def test_bare_estimator_and_search_result(tmp_path):
    X, y = _data()
    images = {"image": X["image"]}
    reg = I2M2Regressor(max_epochs=1, cv=None, random_state=0).fit(images, np.arange(float(N)))
    sk_i2m2.save(reg, tmp_path / "reg")
    assert (tmp_path / "reg" / "config.json").is_file()
    loaded = sk_i2m2.load(tmp_path / "reg")
    assert isinstance(loaded, I2M2Regressor)
    np.testing.assert_array_equal(loaded.predict(images), reg.predict(images))

    search = GridSearchCV(_pipeline(), {"clf__lr": [1e-3]}, cv=2).fit(X, y)
    with pytest.raises(TypeError, match="save its best_estimator_"):
        sk_i2m2.save(search, tmp_path / "search")
    sk_i2m2.save(search.best_estimator_, tmp_path / "best")
    best = sk_i2m2.load(tmp_path / "best")
    np.testing.assert_array_equal(best.predict_proba(X), search.predict_proba(X))


def _rewrite_schema(path, edit):
    """Rewrite the skops file's schema.json through ``edit``."""
    skops_file = path / "pipeline.skops"
    with zipfile.ZipFile(skops_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["schema.json"] = json.dumps(edit(json.loads(members["schema.json"]))).encode()
    with zipfile.ZipFile(skops_file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_tampered_file_naming_an_untrusted_type_is_refused(fitted, tmp_path):
    sk_i2m2.save(fitted, tmp_path)

    def smuggle(node):
        # PerModality's node now asks skops to build os.system instead.
        if isinstance(node, dict):
            if node.get("__class__") == "PerModality":
                node["__module__"], node["__class__"] = "os", "system"
            return {key: smuggle(value) for key, value in node.items()}
        return [smuggle(value) for value in node] if isinstance(node, list) else node

    _rewrite_schema(tmp_path, smuggle)
    with pytest.raises(ModelFileError, match=r"names types that are not trusted: \['os.system'\]"):
        sk_i2m2.load(tmp_path)


def test_load_refuses_what_it_did_not_write(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds neither"):
        sk_i2m2.load(tmp_path)
    (tmp_path / "sk-i2m2-pipeline.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelFileError, match="is not an sk-i2m2 pipeline manifest"):
        sk_i2m2.load(tmp_path)
    with pytest.raises(TypeError, match="got StandardScaler"):
        sk_i2m2.save(StandardScaler(), tmp_path)


def test_nested_estimator_is_refused_and_a_bare_save_replaces_a_pipeline(fitted, tmp_path):
    with pytest.raises(TypeError, match=r"inside one of its steps \(inner__clf\)"):
        sk_i2m2.save(Pipeline([("inner", fitted)]), tmp_path / "nested")
    sk_i2m2.save(fitted, tmp_path)
    sk_i2m2.save(fitted[-1], tmp_path)
    assert isinstance(sk_i2m2.load(tmp_path), I2M2Classifier)


def test_a_missing_extra_names_the_install_command(fitted, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skops.io", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "sk-i2m2\[deploy\]"'):
        sk_i2m2.save(fitted, tmp_path)


@requires_cuda
def test_gpu_trained_pipeline_loads_on_cpu(tmp_path):
    X, y = _data()
    pipe = _pipeline().set_params(clf__device="cuda").fit(X, y)
    sk_i2m2.save(pipe, tmp_path)
    on_cpu = sk_i2m2.load(tmp_path, device="cpu")
    assert on_cpu[-1].device_.type == "cpu"
    # cuDNN convolutions run in TF32 by default: close, not bit-identical.
    np.testing.assert_allclose(on_cpu.predict_proba(X), pipe.predict_proba(X), atol=2e-3)
