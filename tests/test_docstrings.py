"""The estimators' docstrings: every parameter documented once, shared text written once.

The shared entries live in :mod:`sk_i2m2._docstrings`; these tests check that
each estimator documents exactly the parameters ``get_params`` reports, with
the defaults of its signature, that every shared entry reaches each
estimator word for word, and that only the entries listed in ``OWN`` are an
estimator's own.
"""

from __future__ import annotations

import ast
import inspect
from collections import Counter

import numpy as np
import pytest

from sk_i2m2 import I2M2Classifier, I2M2Regressor, I2M2SurvivalAnalysis
from sk_i2m2._base import I2M2Base
from sk_i2m2._docstrings import ATTRIBUTES, PARAMETERS, fill_docstring

numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape")

ESTIMATORS = [I2M2Classifier, I2M2Regressor, I2M2SurvivalAnalysis]

# The parameter entries an estimator writes itself: its own parameters, and
# shared ones whose default or meaning is its own.
OWN = {
    I2M2Classifier: {"optimizer", "class_weight", "calibration"},
    I2M2Regressor: {"optimizer", "calibration"},
    I2M2SurvivalAnalysis: {"ties", "lr", "batch_size", "optimizer", "calibration", "accelerator"},
}
# Defaults that differ from I2M2Base's, and why: full-batch Cox training.
OWN_DEFAULTS = {I2M2Classifier: {"calibration"}, I2M2SurvivalAnalysis: {"lr", "optimizer"}}


def _section(cls, name):
    """``(names, type)`` of each entry of a numpydoc section of ``cls``'s docstring."""
    doc = numpydoc_docscrape.NumpyDocString(cls.__doc__)
    return [([n.strip() for n in entry.name.split(",")], entry.type) for entry in doc[name]]


def _has_entry(cls, entry):
    # cleandoc: Python 3.13 strips a docstring's indentation, earlier ones do not.
    return f"\n{entry}\n" in f"\n{inspect.cleandoc(cls.__doc__)}\n"


def _params(cls):
    return cls().get_params(deep=False)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_parameter_is_documented_once(cls):
    documented = Counter(name for names, _ in _section(cls, "Parameters") for name in names)
    assert set(documented) == set(_params(cls))
    assert set(documented.values()) == {1}
    assert "%(" not in cls.__doc__


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_defaults_are_the_signature_defaults(cls):
    params = _params(cls)
    for names, type_ in _section(cls, "Parameters"):
        documented = type_.rsplit("default=", 1)[1]
        for name in names:
            default = params[name]
            if inspect.isclass(default):
                assert documented == f"torch.optim.{default.__name__}", name
            else:
                assert ast.literal_eval(documented) == default, name


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_shared_entries_are_written_once(cls):
    params = _params(cls)
    shared = {name for name, entry in PARAMETERS.items() if _has_entry(cls, entry)}
    assert set(params) - shared == OWN[cls]
    # An own entry of a shared parameter is there for a reason: no copies.
    assert not shared & OWN[cls]
    attributes = {name for names, _ in _section(cls, "Attributes") for name in names}
    for name, entry in ATTRIBUTES.items():
        assert _has_entry(cls, entry), name
    assert set(ATTRIBUTES) <= attributes


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_signature_defaults_are_the_base_defaults(cls):
    base = inspect.signature(I2M2Base).parameters
    own = inspect.signature(cls).parameters
    assert set(base) <= set(own)
    differ = {name for name in base if own[name].default != base[name].default}
    assert differ == OWN_DEFAULTS.get(cls, set())
    assert [name for name in own if name in base] == list(base)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_numpydoc_validation(cls):
    validate = pytest.importorskip("numpydoc.validate")
    errors = validate.validate(f"sk_i2m2.{cls.__name__}")["errors"]
    assert errors == []


@pytest.mark.parametrize("cls", [I2M2Base, *ESTIMATORS], ids=lambda cls: cls.__name__)
def test_classes_are_under_500_lines(cls):
    assert len(inspect.getsourcelines(cls)[0]) <= 500


def test_fill_docstring_indents_entries_and_rejects_unknown_names():
    class Documented:
        """Summary.

        Parameters
        ----------
        %(verbose)s
        """

    fill_docstring(Documented)
    lines = Documented.__doc__.splitlines()
    first = PARAMETERS["verbose"].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == first[0])
    indent = lines[start][: -len(first[0])]
    assert lines[start : start + len(first)] == [
        (indent + line) if line else line for line in first
    ]

    class Misspelt:
        """%(verbos)s"""

    with pytest.raises(KeyError, match="verbos"):
        fill_docstring(Misspelt)


def _fit_small(cls):
    rng = np.random.RandomState(0)
    X = {"a": rng.randn(60, 3), "b": rng.randn(60, 2)}
    if cls is I2M2Classifier:
        y = (X["a"][:, 0] > 0).astype(int)
    elif cls is I2M2Regressor:
        y = X["a"][:, 0] + X["b"][:, 0]
    else:
        time = rng.exponential(np.exp(-X["a"][:, 0]))
        y = np.array(
            list(zip(time < 1.5, np.minimum(time, 1.5))), dtype=[("event", bool), ("time", float)]
        )
    return cls(max_epochs=2, warm_start=True, random_state=0).fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_attributes_are_fitted(cls):
    model = _fit_small(cls)
    for names, _ in _section(cls, "Attributes"):
        for name in names:
            assert hasattr(model, name), name
