"""Every bad input is refused before training, with a message naming the problem."""

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality

N = 30


def _data(n=N, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    X = {
        "tab": pd.DataFrame(rng.randn(n, 3) + y[:, None], columns=["age", "volume", "flag"]),
        "img": (rng.randn(n, 1, 8, 8) + y[:, None, None, None]).astype(np.float32),
    }
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    clf = I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)
    clf.proba_before_ = clf.predict_proba(X)  # for the tests, not the estimator
    return clf


class _Fails(torch.nn.Module):
    """Takes 5 input features; the image modality has 64 per sample."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.linear(x)


def _with(name, value):
    def build(X, y):
        return {}, dict(X, **{name: value(X[name]) if callable(value) else value}), y

    return build


def _tab_values(change):
    def value(df):
        values = df.to_numpy().copy()
        change(values)
        return values

    return value


def _nan(values):
    values[4, 1] = np.nan


def _inf(values):
    values[2, 0] = -np.inf


def _params(**params):
    return lambda X, y: (params, X, y)


def _huge(df):
    values = df.to_numpy().copy()
    values[0, 0] = 1e39
    return values


def _nullable(df):
    out = df.copy()
    out["flag"] = pd.array([None] + [1] * (len(df) - 1), dtype="Int64")
    return out


def _object_strings(df):
    values = df.to_numpy().astype(object)
    values[3, 2] = "yes"
    return values


def _object_dict(df):
    values = df.to_numpy().astype(object)
    values[0, 0] = {"a": 1}
    return values


def _strings(df):
    out = df.copy()
    out["flag"] = "yes"
    return out


def _without_sample(i):
    """Sample ``i`` misses every modality (all NaN)."""

    def build(X, y):
        tab = X["tab"].astype(float)
        tab.iloc[i] = np.nan
        img = X["img"].copy()
        img[i] = np.nan
        return {}, dict(X, tab=tab, img=img), y

    return build


# (id, build(X, y) -> (params, X, y), exception, message pattern)
FIT_CASES = [
    ("X-array", lambda X, y: ({}, X["img"], y), TypeError, "X must be a mapping"),
    ("X-list", lambda X, y: ({}, list(X.values()), y), TypeError, "X must be a mapping"),
    ("X-empty", lambda X, y: ({}, {}, y), ValueError, "empty mapping"),
    (
        "zero-samples",
        lambda X, y: ({}, {k: v[:0] for k, v in X.items()}, y[:0]),
        ValueError,
        r"Modality 'tab': Found array with 0 sample\(s\)",
    ),
    (
        "counts-differ",
        _with("img", lambda v: v[:-1]),
        ValueError,
        f"Modality 'img' has {N - 1} samples but modality 'tab' has {N}",
    ),
    ("y-length", lambda X, y: ({}, X, y[:-1]), ValueError, f"y has {N - 1} samples"),
    (
        "y-single-class",
        lambda X, y: ({}, X, np.zeros_like(y)),
        ValueError,
        r"y contains only one class \(0\)",
    ),
    ("y-continuous", lambda X, y: ({}, X, np.linspace(0, 1, N)), ValueError, "continuous"),
    (
        "y-2d-multiclass",
        lambda X, y: ({}, X, np.c_[y, 2 * y]),
        ValueError,
        r"y has values outside \[0, 1\] in label column 1",
    ),
    ("y-none", lambda X, y: ({}, X, None), ValueError, "requires y to be passed"),
    (
        "y-nan",
        lambda X, y: ({}, X, np.where(y == 0, np.nan, 1.0)),
        ValueError,
        r"y has 15 missing label\(s\) \(NaN or None\), first in sample 0",
    ),
    (
        "y-none-labels",
        lambda X, y: ({}, X, np.where(y == 0, None, "a")),
        ValueError,
        r"y has 15 missing label\(s\)",
    ),
    (
        "nan",
        _with("tab", _tab_values(_nan)),
        ValueError,
        "Modality 'tab' contains 1 NaN value.*sample 4",
    ),
    (
        "inf",
        _with("tab", _tab_values(_inf)),
        ValueError,
        "Modality 'tab': Input tab contains infinity .* First in sample 2",
    ),
    (
        "beyond-float32",
        _with("tab", _huge),
        ValueError,
        r"Modality 'tab': Input tab contains infinity or a value too large for "
        r"dtype\('float32'\)",
    ),
    ("nullable-NA", _with("tab", _nullable), ValueError, "Modality 'tab' contains 1 NaN"),
    (
        "object-strings",
        _with("tab", _object_strings),
        ValueError,
        "Modality 'tab': could not convert string to float: 'yes'",
    ),
    (
        "object-dict",
        _with("tab", _object_dict),
        TypeError,
        "Modality 'tab': float.. argument must be a string or a real number",
    ),
    (
        "string-array",
        _with("tab", lambda df: df.to_numpy().astype(str)),
        TypeError,
        "Modality 'tab' has dtype <U",
    ),
    (
        "complex-array",
        _with("tab", lambda df: df.to_numpy() * 1j),
        ValueError,
        "Modality 'tab': Complex data not supported",
    ),
    (
        "complex-tensor",
        _with("img", lambda v: torch.as_tensor(v) * 1j),
        ValueError,
        "Modality 'img': Complex data not supported",
    ),
    (
        "complex-column",
        _with("tab", lambda df: df * 1j),
        ValueError,
        "Modality 'tab': Complex data not supported",
    ),
    (
        "string-column",
        _with("tab", _strings),
        TypeError,
        "Modality 'tab' has non-numeric column 'flag'",
    ),
    (
        "sparse-inf",
        _with("tab", lambda df: scipy.sparse.csr_matrix(_tab_values(_inf)(df))),
        ValueError,
        "Modality 'tab': Input tab contains infinity",
    ),
    (
        "one-dimensional",
        _with("tab", lambda df: df["age"].to_numpy()),
        ValueError,
        r"(?s)Modality 'tab': Expected 2D array, got 1D array.*reshape\(-1, 1\)",
    ),
    (
        "series",
        _with("tab", lambda df: df["age"]),
        ValueError,
        "Modality 'tab': Expected a 2-dimensional container but got .*Series",
    ),
    (
        "scalar",
        _with("tab", np.float32(1.0)),
        TypeError,
        "Modality 'tab' must be an array-like with samples on the first axis",
    ),
    (
        "no-features",
        _with("tab", np.zeros((N, 0))),
        ValueError,
        r"Modality 'tab': Found array with 0 feature\(s\) \(shape=\(30, 0\)\)",
    ),
    (
        "no-values-per-sample",
        _with("img", np.zeros((N, 0, 8, 8))),
        ValueError,
        r"Modality 'img': Found array with 0 feature\(s\) \(shape=\(30, 0, 8, 8\)\)",
    ),
    (
        "ragged",
        _with("tab", [np.zeros(3)] * (N - 1) + [np.zeros(4)]),
        ValueError,
        "Modality 'tab': setting an array element with a sequence",
    ),
    (
        "six-dimensional",
        _with("img", np.zeros((N, 1, 2, 2, 2, 2))),
        ValueError,
        "Modality 'img' .* no default encoder takes it",
    ),
    (
        "mlp-on-image",
        _params(encoders={"img": "mlp"}),
        ValueError,
        r"Modality 'img' has samples of shape \(1, 8, 8\).*MLPEncoder takes 2-D",
    ),
    (
        "conv-on-vector",
        _params(encoders={"tab": "conv2d"}),
        ValueError,
        "Modality 'tab' .* Conv2dEncoder takes",
    ),
    (
        "gru-on-volume",
        _params(encoders={"img": "gru"}),
        ValueError,
        "Modality 'img' .* GRUEncoder takes",
    ),
    (
        "module-fails",
        _params(encoders={"img": _Fails}),
        ValueError,
        r"The encoder of modality 'img' \(ModuleEncoder\) fails on a batch of shape",
    ),
    (
        "encoders-unknown-modality",
        _params(encoders={"xray": "mlp"}),
        ValueError,
        "encoders names modality 'xray', which is not in X",
    ),
    (
        "encoders-unknown-kind",
        _params(encoders={"tab": "resnet"}),
        ValueError,
        "Unknown encoder 'resnet' for modality 'tab'",
    ),
    (
        "encoders-wrong-type",
        _params(encoders={"tab": 3}),
        TypeError,
        r"encoders\['tab'\] must be an encoder spec",
    ),
    ("batch_size-0", _params(batch_size=0), InvalidParameterError, "'batch_size' parameter"),
    ("batch_size-negative", _params(batch_size=-8), InvalidParameterError, "'batch_size'"),
    ("max_epochs-0", _params(max_epochs=0), InvalidParameterError, "'max_epochs' parameter"),
    ("lr-0", _params(lr=0.0), InvalidParameterError, "'lr' parameter"),
    ("lr-negative", _params(lr=-1e-3), InvalidParameterError, "'lr' parameter"),
    ("finetune_lr-0", _params(finetune_lr=0), InvalidParameterError, "'finetune_lr'"),
    (
        "validation_fraction-1",
        _params(validation_fraction=1.0),
        InvalidParameterError,
        "'validation_fraction'",
    ),
    (
        "fusion-unknown",
        _params(fusion="sum"),
        InvalidParameterError,
        r"'fusion' parameter .* \{'concat', 'lrtf'\}|'fusion' parameter .*'lrtf', 'concat'",
    ),
    (
        "dependencies-unknown",
        _params(dependencies="all"),
        InvalidParameterError,
        "'dependencies' parameter .*'both'",
    ),
    ("device-unknown", _params(device="gpu"), ValueError, "device='gpu' is not a device"),
    (
        "class_weight-unknown-class",
        _params(class_weight={5: 2.0}),
        ValueError,
        "class_weight names class 5",
    ),
    (
        "name-not-str",
        lambda X, y: ({}, {0: X["img"]}, y),
        TypeError,
        "Modality names must be strings",
    ),
    ("name-empty", lambda X, y: ({}, {"": X["img"]}, y), ValueError, "Modality name ''"),
    ("name-dot", lambda X, y: ({}, {"a.b": X["img"]}, y), ValueError, "Modality name 'a.b'"),
    (
        "name-double-underscore",
        lambda X, y: ({}, {"a__b": X["img"], "tab": X["tab"]}, y),
        ValueError,
        "Modality name 'a__b' contains '__'",
    ),
    (
        "name-inter",
        lambda X, y: ({}, {"inter": X["img"], "tab": X["tab"]}, y),
        ValueError,
        "Modality name 'inter' is reserved",
    ),
    (
        "name-module-attribute",
        lambda X, y: ({}, {"values": X["img"], "tab": X["tab"]}, y),
        ValueError,
        "Modality name 'values' clashes with an attribute of torch.nn.Module",
    ),
    (
        "too-few-for-split",
        lambda X, y: ({}, {k: v[:3] for k, v in X.items()}, y[:3]),
        ValueError,
        r"Too few samples \(3\).*early_stopping=False",
    ),
    (
        "modality-never-observed",
        _with("img", np.full((N, 1, 8, 8), np.nan)),
        ValueError,
        r"Modality 'img' is missing \(all NaN\) in every sample; drop it from X",
    ),
    (
        "sample-without-modality",
        _without_sample(7),
        ValueError,
        r"1 sample\(s\) have no modality .*first sample 7",
    ),
    (
        "modality_dropout-1",
        _params(modality_dropout=1.0),
        InvalidParameterError,
        "'modality_dropout' parameter",
    ),
    (
        "modality_dropout-with-drop",
        _params(modality_dropout=0.2, inter_missing="drop"),
        ValueError,
        "modality_dropout=0.2 trains the inter expert's null embeddings",
    ),
    (
        "inter_missing-unknown",
        _params(inter_missing="zero"),
        InvalidParameterError,
        "'inter_missing' parameter",
    ),
    (
        "name-reserved-mask",
        lambda X, y: ({}, {"__present__": X["img"], "tab": X["tab"]}, y),
        ValueError,
        "Modality name '__present__' is reserved",
    ),
]


@pytest.mark.parametrize(
    "build, error, match", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES]
)
def test_bad_fit_input_is_refused_and_keeps_previous_model(fitted, build, error, match):
    X, y = _data()
    params, X_bad, y_bad = build(X, y)
    # A shallow copy: set_params and a (failed) fit replace attributes of the
    # copy, never the fixture's.
    clf = copy.copy(fitted)
    with pytest.raises(error, match=match):
        clf.set_params(**params).fit(X_bad, y_bad)
    assert clf.module_ is fitted.module_
    assert clf.modalities_ == ["tab", "img"] and clf.input_shapes_ == fitted.input_shapes_
    np.testing.assert_array_equal(clf.predict_proba(X), fitted.proba_before_)


def _renamed(df):
    return df.rename(columns={"flag": "smoker"})


def _one_nan(images):
    images = images.copy()
    images[3, 0, 2, 2] = np.nan
    return images


PREDICT_CASES = [
    ("X-array", lambda X: X["img"], TypeError, "X must be a mapping"),
    ("X-empty", lambda X: {}, ValueError, "empty mapping"),
    (
        "no-modality-left",
        lambda X: {"tab": X["tab"].astype(float) * np.nan},
        ValueError,
        r"30 sample\(s\) have no modality \(every modality is missing or all NaN\), "
        "first sample 0",
    ),
    (
        "extra-modality",
        lambda X: dict(X, ecg=X["img"]),
        ValueError,
        "Modality 'ecg' was not seen in fit",
    ),
    (
        "image-shape",
        lambda X: dict(X, img=np.zeros((N, 1, 9, 9))),
        ValueError,
        r"Modality 'img' has samples of shape \(1, 9, 9\) but had \(1, 8, 8\) in fit",
    ),
    (
        "image-ndim",
        lambda X: dict(X, img=np.zeros((N, 8, 8))),
        ValueError,
        r"Modality 'img' has samples of shape \(8, 8\)",
    ),
    (
        "feature-count",
        lambda X: dict(X, tab=np.zeros((N, 4))),
        ValueError,
        "Modality 'tab' has 4 features but had 3 in fit",
    ),
    (
        "columns-renamed",
        lambda X: dict(X, tab=_renamed(X["tab"])),
        ValueError,
        r"Modality 'tab': the DataFrame's columns \['flag', 'smoker'\] differ",
    ),
    (
        "columns-reordered",
        lambda X: dict(X, tab=X["tab"][["volume", "age", "flag"]]),
        ValueError,
        "Modality 'tab': the DataFrame's columns are in a different order",
    ),
    (
        "counts-differ",
        lambda X: dict(X, tab=X["tab"][:5]),
        ValueError,
        "Modality 'img' has 30 samples but modality 'tab' has 5",
    ),
    (
        "zero-samples",
        lambda X: {k: v[:0] for k, v in X.items()},
        ValueError,
        r"Modality 'tab': Found array with 0 sample\(s\)",
    ),
    (
        "nan",
        lambda X: dict(X, img=_one_nan(X["img"])),
        ValueError,
        "Modality 'img' contains 1 NaN value.*sample 3.*all NaN counts as missing",
    ),
    (
        "sparse-features",
        lambda X: dict(X, tab=scipy.sparse.csr_matrix(np.ones((N, 4)))),
        ValueError,
        "Modality 'tab' has 4 features but had 3 in fit",
    ),
    (
        "inf",
        lambda X: dict(X, img=np.where(np.arange(N)[:, None, None, None] == 5, np.inf, X["img"])),
        ValueError,
        "Modality 'img': Input img contains infinity .* First in sample 5",
    ),
    (
        "name-double-underscore",
        lambda X: dict(X, a__b=X["img"]),
        ValueError,
        "Modality 'a__b' was not seen in fit",
    ),
    (
        "strings",
        lambda X: dict(X, img=X["img"].astype(str)),
        TypeError,
        "Modality 'img' has dtype <U",
    ),
]


@pytest.mark.parametrize("method", ["predict", "predict_proba", "expert_proba"])
@pytest.mark.parametrize(
    "build, error, match", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES]
)
def test_bad_predict_input_is_refused(fitted, method, build, error, match):
    X, _ = _data()
    with pytest.raises(error, match=match):
        getattr(fitted, method)(build(X))


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "predict_log_proba", "expert_proba", "score", "save"]
)
def test_use_before_fit_raises_not_fitted(method, tmp_path):
    X, y = _data()
    args = {"score": (X, y), "save": (tmp_path,)}.get(method, (X,))
    with pytest.raises(NotFittedError):
        getattr(I2M2Classifier(), method)(*args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="CUDA is not available"):
        I2M2Classifier(device="cuda").fit(X, y)


def test_numeric_dtypes_and_containers_are_accepted_and_cast(fitted):
    X, y = _data()
    expected = fitted.predict_proba(X)
    tab = X["tab"].to_numpy(dtype=np.float32)
    variants = [
        dict(X, img=X["img"].astype(np.float64)),
        dict(X, img=torch.as_tensor(X["img"], dtype=torch.float64)),
        ModalityDict(X),
    ]
    for variant in variants:
        np.testing.assert_array_equal(fitted.predict_proba(variant), expected)
    with pytest.warns(UserWarning, match="Modality 'tab' has no column names"):
        np.testing.assert_array_equal(fitted.predict_proba(dict(X, tab=tab)), expected)

    # Object arrays of numbers are read as numbers, as by check_array.
    with pytest.warns(UserWarning, match="Modality 'tab' has no column names"):
        np.testing.assert_array_equal(
            fitted.predict_proba(dict(X, tab=tab.astype(object))), expected
        )

    half = fitted.predict_proba(dict(X, img=X["img"].astype(np.float16)))
    np.testing.assert_allclose(half, expected, atol=1e-2)
    brain = fitted.predict_proba(dict(X, img=torch.as_tensor(X["img"]).bfloat16()))
    np.testing.assert_allclose(brain, expected, atol=5e-2)

    # Integer and boolean inputs train as floats.
    rng = np.random.RandomState(0)
    X_int = {"counts": torch.randint(0, 20, (N, 4)), "flags": rng.rand(N, 3) > 0.5}
    clf = I2M2Classifier(max_epochs=1, random_state=0).fit(X_int, y)
    proba = clf.predict_proba(X_int)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()


def test_fit_without_names_then_dataframe_warns(fitted):
    X, y = _data()
    clf = I2M2Classifier(max_epochs=1, random_state=0)
    clf.fit(dict(X, tab=X["tab"].to_numpy()), y)
    assert "tab" not in clf.feature_names_in_
    with pytest.warns(UserWarning, match="had no column names in fit"):
        clf.predict(X)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: I2M2Classifier(max_epochs=1).fit(X, np.arange(N) % 2),
        lambda X: PerModality({}).fit(X),
        lambda X: PerModality({"tab": StandardScaler()}).fit(X),
        lambda X: ModalityDict(X),
    ],
    ids=["I2M2Classifier", "PerModality-remainder", "PerModality", "ModalityDict"],
)
def test_double_underscore_in_a_modality_name_is_refused(make):
    # "__" separates nested parameter names (encoders__<modality>__<param>),
    # as in a Pipeline's step names.
    X, _ = _data()
    X = dict(X, a__b=X["img"])
    with pytest.raises(ValueError, match="Modality name 'a__b' contains '__'"):
        make(X)
    with pytest.raises(ValueError, match="Modality name 'a__b' contains '__'"):
        ModalityDict(X=X["tab"])["a__b"] = X["img"]
