"""Permutation importance of whole modalities or single features of a dict input.

scikit-learn's :func:`sklearn.inspection.permutation_importance` takes one
2-D array; this is the same method for a mapping of modalities, with the
same random draws, so that a single vector modality gives scikit-learn's
numbers exactly.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.utils import Bunch, _safe_indexing, check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.random import sample_without_replacement

from ._data import ModalityDict, index_rows
from ._validation import check_modality_mapping, missing_rows

__all__ = ["permutation_importance", "plot_permutation_importance"]


def _n_columns(name, value):
    """Number of columns of a vector modality; refuse anything that is not 2-D."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[1])
    what = (
        f"samples of shape {tuple(shape[1:])}"
        if shape is not None
        else f"a {type(value).__name__} (one entry per sample)"
    )
    raise ValueError(
        f"by='feature' permutes single columns of vector modalities (2-D: samples x "
        f"features); modality {name!r} has {what}. Permute it whole with "
        "by='modality', or leave it out with modalities=[...]."
    )


def _targets(X, by, modalities):
    """``(modality, column or None, name)`` of each thing to permute."""
    targets = []
    for name in modalities:
        value = X[name]
        if by == "modality":
            targets.append((name, None, name))
            continue
        columns = value.columns if isinstance(value, pd.DataFrame) else None
        for j in range(_n_columns(name, value)):
            label = str(columns[j]) if columns is not None else f"{name}[{j}]"
            targets.append((name, j, label))
    return targets


def _permute_column(value, j, rows):
    """A copy of ``value`` whose column ``j`` takes its values from rows ``rows``."""
    if isinstance(value, pd.DataFrame):
        permuted = value.copy()
        column = value.iloc[rows, j]
        column.index = value.index  # assign by position, not by index label
        permuted.isetitem(j, column)
        return permuted
    if sp.issparse(value):
        permuted = value.tolil(copy=True)
        permuted[:, j] = value.tocsr()[rows][:, [j]]
        return permuted.asformat(value.format)
    if isinstance(value, torch.Tensor):
        permuted = value.clone()
        permuted[:, j] = value[torch.as_tensor(rows, device=value.device), j]
        return permuted
    value = np.asarray(value)
    permuted = value.copy()
    permuted[:, j] = value[rows, j]
    return permuted


def _permutation_scores(
    estimator, X, y, sample_weight, target, seed, n_repeats, scorer, max_samples
):
    """Scores of ``n_repeats`` permutations of one modality or column.

    The random draws are those of scikit-learn's own permutation importance:
    one ``RandomState(seed)`` per target, first the subsample of rows, then
    one shuffle per repeat, each applied on top of the previous one.
    """
    random_state = check_random_state(seed)
    if max_samples < len(X):
        rows = sample_without_replacement(len(X), max_samples, random_state=random_state)
        X = X[rows]
        y = _safe_indexing(y, rows)
        if sample_weight is not None:
            sample_weight = _safe_indexing(sample_weight, rows)
    name, column, _ = target
    value = X[name]
    # Rows that miss the modality (all NaN) stay in place: the values move
    # among the rows that have it, so no sample loses or gains the modality.
    observed = np.flatnonzero(~missing_rows(value))
    shuffling_idx = np.arange(len(observed))
    order = np.arange(len(X))
    scores = []
    for _ in range(n_repeats):
        random_state.shuffle(shuffling_idx)
        order[observed] = order[observed][shuffling_idx]
        X_permuted = ModalityDict(X)
        if column is None:
            permuted = index_rows(value, order)
            if isinstance(value, pd.DataFrame):
                permuted.index = value.index
            X_permuted[name] = permuted
        else:
            X_permuted[name] = _permute_column(value, column, order)
        if sample_weight is None:
            scores.append(scorer(estimator, X_permuted, y))
        else:
            scores.append(scorer(estimator, X_permuted, y, sample_weight=sample_weight))
    return scores


def _importances_bunch(baseline, permuted, targets):
    importances = baseline - np.asarray(permuted, dtype=float)
    return Bunch(
        importances_mean=importances.mean(axis=1),
        importances_std=importances.std(axis=1),
        importances=importances,
        feature_names=np.array([label for _, _, label in targets], dtype=object),
        modality=np.array([name for name, _, _ in targets], dtype=object),
    )


@validate_params(
    {
        "estimator": [HasMethods(["fit"])],
        "X": "no_validation",  # check_modality_mapping names the problem
        "y": ["array-like", None],
        "by": [StrOptions({"modality", "feature"})],
        "modalities": [list, tuple, None],
        "scoring": [StrOptions(set(get_scorer_names())), callable, list, tuple, dict, None],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "sample_weight": ["array-like", None],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
    },
    prefer_skip_nested_validation=True,
)
def permutation_importance(
    estimator,
    X,
    y,
    *,
    by="modality",
    modalities=None,
    scoring=None,
    n_repeats=5,
    random_state=None,
    n_jobs=None,
    sample_weight=None,
    max_samples=1.0,
):
    """Permutation importance of whole modalities or of single features.

    The drop in score when the values of a modality (or of one feature) are
    shuffled across samples, breaking their link with the target and with
    the other modalities, as in :func:`sklearn.inspection.permutation_importance`,
    which cannot take a dict of modalities. The estimator is not refitted:
    pass held-out rows to measure what the model relies on to generalise.

    Parameters
    ----------
    estimator : object
        A fitted estimator that takes a dict of modalities: an
        :class:`~sk_i2m2.I2M2Classifier`, a scikit-learn ``Pipeline`` ending
        in one (the permutation is applied to the pipeline's input), or any
        classifier or regressor that ``scoring`` can score on a dict.
    X : dict or ModalityDict
        Modality name -> array-like with samples on the first axis (numpy
        array, torch tensor, pandas DataFrame, scipy sparse matrix, or a
        list of entries).
    y : array-like of shape (n_samples,) or None
        Targets.
    by : {"modality", "feature"}, default="modality"
        ``"modality"`` permutes each modality whole: the rows of a modality
        are shuffled together, so a sample gets all of another sample's
        values (an image, a table row, a text). ``"feature"`` permutes each
        column of each vector modality (2-D: samples x features) on its
        own; a modality of another shape (images, volumes, sequences, lists
        of texts) raises a ``ValueError``: permute it whole, or leave it out
        with ``modalities``.
    modalities : list of str or None, default=None
        The modalities to permute, in the order of the result; ``None``
        means every modality of ``X``. Modalities not listed stay as they
        are.
    scoring : str, callable, list, tuple, dict or None, default=None
        As in :func:`sklearn.inspection.permutation_importance`: any
        scorer that :func:`sklearn.metrics.check_scoring` accepts, ``None``
        for the estimator's ``score`` (accuracy for a classifier, R² for a
        regressor); several scorers (a list, tuple or dict) give one result
        per scorer.
    n_repeats : int, default=5
        Number of permutations of each modality or feature.
    random_state : int, RandomState instance or None, default=None
        Draws the permutations (and the rows of ``max_samples``); an int
        gives the same result on every call, whatever ``n_jobs``.
    n_jobs : int or None, default=None
        Modalities or features scored in parallel (``joblib``); ``None``
        means 1.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Sample weights passed to the scorer.
    max_samples : int or float, default=1.0
        Rows drawn without replacement for the permuted scores: an int is a
        number of rows, a float a fraction of them. The baseline score uses
        every row, as in scikit-learn.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` or dict of such
        With one row per modality (``by="modality"``) or per feature
        (``by="feature"``):

        - ``importances_mean``, ``importances_std``: ndarray of shape
          (n_features,), the mean and standard deviation of the importances
          over the repeats;
        - ``importances``: ndarray of shape (n_features, n_repeats), the
          baseline score minus each permuted score;
        - ``feature_names``: ndarray of str of shape (n_features,), what was
          permuted: the modality name for ``by="modality"``; for
          ``by="feature"``, the column name of a DataFrame modality, else
          ``"<modality>[<j>]"`` for column ``j``;
        - ``modality``: ndarray of str of shape (n_features,), the modality
          of each row.

        With several scorers, a dict of scorer name -> such a ``Bunch``.

    Notes
    -----
    A sample that misses a modality (all its values NaN) keeps missing it:
    the values of a modality are shuffled among the samples that have it,
    so the pattern of missing modalities, which the model may also use, is
    left as it is and only the observed values move.

    Features that carry the same information (correlated columns, or a
    modality that repeats another) share their importance: permuting one
    leaves the other, and both can look unimportant. Permuting whole
    modalities avoids this within a modality.

    Examples
    --------
    >>> from sk_i2m2 import I2M2Classifier
    >>> from sk_i2m2.datasets import make_multimodal_classification
    >>> from sk_i2m2.inspection import permutation_importance
    >>> X, y = make_multimodal_classification(200, random_state=0)
    >>> clf = I2M2Classifier(max_epochs=5, early_stopping=False, random_state=0).fit(X, y)
    >>> result = permutation_importance(clf, X, y, n_repeats=3, random_state=0)
    >>> list(result.feature_names), result.importances.shape
    (['m0', 'm1'], (2, 3))
    >>> result = permutation_importance(clf, X, y, by="feature", modalities=["m0"])
    >>> list(result.feature_names[:2])
    ['m0[0]', 'm0[1]']
    """
    n_samples = check_modality_mapping(X)
    X = X if isinstance(X, ModalityDict) else ModalityDict(X)
    if modalities is None:
        modalities = list(X)
    if not modalities:
        raise ValueError("modalities is empty; name at least one modality to permute.")
    for name in modalities:
        if name not in X:
            raise ValueError(
                f"Modality {name!r} in modalities is not in X (modalities: {list(X)})."
            )
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities lists a modality twice: {list(modalities)}.")
    if y is not None and len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    targets = _targets(X, by, modalities)

    random_state = check_random_state(random_state)
    # One seed for every target, as in scikit-learn: each gets a fresh
    # RandomState from it, whatever the joblib backend.
    seed = random_state.randint(np.iinfo(np.int32).max + 1)
    if not isinstance(max_samples, Integral):
        max_samples = int(max_samples * n_samples)
    elif max_samples > n_samples:
        raise ValueError(f"max_samples must be <= n_samples ({n_samples}); got {max_samples}.")

    scorer = check_scoring(estimator, scoring=scoring)
    if sample_weight is None:
        baseline = scorer(estimator, X, y)
    else:
        baseline = scorer(estimator, X, y, sample_weight=sample_weight)
    scores = Parallel(n_jobs=n_jobs)(
        delayed(_permutation_scores)(
            estimator, X, y, sample_weight, target, seed, n_repeats, scorer, max_samples
        )
        for target in targets
    )
    if isinstance(baseline, dict):
        return {
            metric: _importances_bunch(
                baseline[metric],
                [[score[metric] for score in repeats] for repeats in scores],
                targets,
            )
            for metric in baseline
        }
    return _importances_bunch(baseline, scores, targets)


def plot_permutation_importance(result, ax=None, top=None):
    """Bar chart of a :func:`permutation_importance` result, most important first.

    Parameters
    ----------
    result : Bunch
        Output of :func:`permutation_importance` (for several scorers, one
        of its values).
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` draws on a new figure.
    top : int or None, default=None
        Draw only the ``top`` most important rows (by mean importance);
        ``None`` draws them all.

    Returns
    -------
    ax : matplotlib Axes
        One horizontal bar per modality or feature (mean importance over the
        repeats, standard deviation as error bar), coloured by modality; the
        dashed line is 0, no effect of the permutation.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plot_permutation_importance requires matplotlib: pip install 'sk-i2m2[plot]'"
        ) from error
    if top is not None and (not isinstance(top, Integral) or top < 1):
        raise ValueError(f"top must be a positive int or None; got {top!r}.")

    order = np.argsort(-result.importances_mean, kind="stable")[:top]
    names = np.asarray(result.feature_names, dtype=object)
    modality = np.asarray(result.modality, dtype=object)
    # Column names may repeat across modalities; the modality tells them apart.
    if len(set(names)) < len(names):
        names = np.array(
            [n if n == m else f"{m}: {n}" for n, m in zip(names, modality)], dtype=object
        )
    colors = dict(zip(dict.fromkeys(modality), plt.get_cmap("tab10").colors * 10))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.5), layout="constrained")
    positions = np.arange(len(order))
    ax.barh(
        positions,
        result.importances_mean[order],
        xerr=result.importances_std[order],
        capsize=3,
        color=[colors[m] for m in modality[order]],
    )
    ax.set_yticks(positions, labels=[str(n) for n in names[order]])
    ax.invert_yaxis()  # most important at the top
    ax.axvline(0.0, color="grey", linestyle="--")
    ax.set_xlabel("decrease in score when permuted")
    return ax
