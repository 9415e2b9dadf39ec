"""Property-based tests: any input either works or raises a documented exception.

The documented exceptions of ``fit`` and the prediction methods are
``ValueError`` and ``TypeError`` (``NotFittedError`` and scikit-learn's
``InvalidParameterError`` are subclasses of ``ValueError``).
"""

import numpy as np
import pandas as pd
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sk_i2m2 import I2M2Classifier

DOCUMENTED = (ValueError, TypeError)
# Numeric types, listed more than once, are drawn more often than the invalid ones.
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_] * 8 + [
    object,
    str,
    np.complex64,
]
SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def modality(draw, n_samples):
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    n = n_samples if draw(st.integers(0, 9)) else draw(st.integers(0, 12))
    sides = st.integers(1, 5) if draw(st.integers(0, 9)) else st.integers(0, 5)
    sample_shape = draw(
        st.lists(sides, min_size=0 if draw(st.integers(0, 9)) == 0 else 1, max_size=4)
    )
    dtype = draw(st.sampled_from(DTYPES))
    values = 3 * rng.randn(n, *sample_shape)
    if draw(st.integers(0, 9)) == 0 and values.size:
        values.flat[rng.randint(values.size)] = draw(st.sampled_from([np.nan, np.inf]))
    with np.errstate(invalid="ignore"):  # NaN and inf cast to integers
        values = values.astype(dtype)
    container = draw(st.sampled_from(["numpy", "torch", "pandas"]))
    if container == "torch" and values.dtype.kind in "biufc":
        return torch.as_tensor(values)
    if container == "pandas" and values.ndim == 2:
        return pd.DataFrame(values, columns=[f"c{i}" for i in range(values.shape[1])])
    return values


@st.composite
def problems(draw):
    n = draw(st.integers(0, 16) if draw(st.integers(0, 9)) == 0 else st.integers(4, 16))
    names = ["a", "b", "c"][
        : draw(st.integers(0, 3) if draw(st.integers(0, 9)) == 0 else st.integers(1, 3))
    ]
    if names and draw(st.integers(0, 9)) == 0:
        names[-1] = draw(st.sampled_from(["inter", "", "x.y", "values"]))
    X = {name: draw(modality(n)) for name in names}
    n_classes = draw(st.sampled_from([1, 2, 2, 3, 3]))
    n_labels = n if draw(st.integers(0, 9)) else draw(st.integers(0, 16))
    y = np.arange(n_labels) % n_classes
    params = dict(
        dependencies=draw(st.sampled_from(["both", "intra", "inter"])),
        fusion=draw(st.sampled_from(["concat", "lrtf"])),
        early_stopping=draw(st.booleans()),
        batch_size=draw(st.sampled_from(["auto", 1, 4])),
    )
    return X, y, params


def _mutate(X, kind):
    name = next(iter(X))
    value = X[name]
    if kind == "drop":
        return {k: v for k, v in X.items() if k != name}
    if kind == "add":
        return dict(X, extra=np.zeros((len(value), 2)))
    if kind == "reshape":
        return dict(X, **{name: np.zeros((len(value), 3, 1))})
    if kind == "strings":
        return dict(X, **{name: np.asarray(value).astype(str)})
    if kind == "nan":
        return dict(X, **{name: np.full(np.shape(value), np.nan)})
    if kind == "rows":
        return {k: v[:1] if k == name else v for k, v in X.items()}
    return X


@SETTINGS
@given(
    problem=problems(),
    mutation=st.sampled_from(["none", "drop", "add", "reshape", "strings", "nan", "rows"]),
)
def test_any_input_works_or_raises_documented_errors(problem, mutation):
    X, y, params = problem
    clf = I2M2Classifier(max_epochs=1, finetune_epochs=1, random_state=0, **params)
    try:
        clf.fit(X, y)
    except DOCUMENTED as exc:
        event(f"fit raised {type(exc).__name__}")
        return
    event("fit worked")
    n = len(y)
    proba = clf.predict_proba(X)
    assert proba.shape == (n, len(clf.classes_))
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-4)

    X_new = _mutate(X, mutation)
    try:
        out = clf.predict_proba(X_new)
    except DOCUMENTED as exc:
        event(f"predict raised {type(exc).__name__}")
        assert mutation != "none"
        return
    event("predict worked")
    assert out.shape[1] == len(clf.classes_) and np.isfinite(out).all()
