"""Synthetic multi-modal data with tunable intra- and inter-modality dependencies."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

# Private, with no public equivalent: the parameter validation of
# scikit-learn's own public functions.
from sklearn.utils._param_validation import Interval, validate_params

from .._data import ModalityDict


def _simplex_directions(n_classes, basis):
    """``n_classes`` unit vectors with equal pairwise distances, in ``span(basis)``.

    The vertices of a regular simplex centred at 0 (for two classes: ``+u``
    and ``-u``), rotated into the columns of ``basis`` (``(n_features,
    n_classes)``, orthonormal).
    """
    vertices = np.eye(n_classes) - 1.0 / n_classes
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices @ basis.T


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_modalities": [Interval(Integral, 2, None, closed="left")],
        "n_features": [Interval(Integral, 2, None, closed="left")],
        "intra_strength": [Interval(Real, 0, None, closed="left")],
        "inter_strength": [Interval(Real, 0, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_multimodal_classification(
    n_samples=1000,
    n_modalities=2,
    n_features=10,
    intra_strength=1.0,
    inter_strength=1.0,
    *,
    n_classes=2,
    random_state=None,
):
    """Generate multi-modal data whose label acts within and across modalities.

    Follows the generative view of I2M2 (Madaan et al., NeurIPS 2024): the
    label ``y`` shapes each modality on its own (*intra-modality*
    dependencies) and, separately, the *interaction* between modalities
    (*inter-modality* dependencies). Every modality ``x_k`` is
    ``n_features`` standard normal noise plus two signals along random,
    mutually orthogonal directions:

    - **intra**: ``intra_strength * a_k[y]``, a class centroid of its own
      for each modality. Each modality alone is informative about ``y``,
      and the modalities are independent given ``y``, so the product of
      per-modality classifiers is the Bayes-optimal model.
    - **inter**: ``inter_strength * b_k[z_k]`` for a latent class ``z_k``
      per modality. ``z_1 .. z_{M-1}`` are uniform and independent of
      ``y``; ``z_M = (y - z_1 - ... - z_{M-1}) mod n_classes``. Any
      ``M - 1`` of the latents, hence every single modality, carry no
      information about ``y``, but all of them together determine it (with
      two classes, ``y`` is the XOR of the latents' signs). Only a model of
      all modalities jointly can use this signal.

    ``a_k[c]`` and ``b_k[c]`` are unit vectors at equal distances from each
    other (``+u`` and ``-u`` for two classes), so a strength is the distance
    of a class centroid from the origin in units of the noise's standard
    deviation: 0 switches an effect off, 0.5 is weak, 2 is strong. With
    two classes one modality's Bayes accuracy from the intra signal alone
    is ``Phi(intra_strength)`` (``Phi`` the standard normal CDF), and
    ``Phi(intra_strength * sqrt(n_modalities))`` from all of them.

    Useful regimes (``n_modalities=2``, two classes):

    - ``intra_strength=0, inter_strength=2``: inter-dominated; every
      per-modality model is at chance, a joint model reaches about 95 %.
    - ``intra_strength=0.7, inter_strength=0``: intra-dominated; the
      product of per-modality experts is optimal (about 84 %).
    - both non-zero: mixed; a model of both kinds of dependency does best.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples. Classes are balanced (their sizes differ by at
        most one) and shuffled.
    n_modalities : int, default=2
        Number of modalities, at least 2.
    n_features : int, default=10
        Features per modality, at least ``2 * n_classes`` (the intra and
        inter signals use ``n_classes`` orthogonal directions each; the
        other features are pure noise).
    intra_strength : float, default=1.0
        Strength of the per-modality (intra) signal, >= 0.
    inter_strength : float, default=1.0
        Strength of the cross-modality (inter) signal, >= 0.
    n_classes : int, default=2
        Number of classes, at least 2.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions, latents, labels and noise; an int gives the
        same data on every call.

    Returns
    -------
    X : ModalityDict
        ``"m0"``, ``"m1"``, ... -> float32 array of shape
        ``(n_samples, n_features)``.
    y : ndarray of shape (n_samples,)
        Labels ``0 .. n_classes - 1`` (int64).

    Examples
    --------
    >>> import numpy as np
    >>> from sk_i2m2.datasets import make_multimodal_classification
    >>> X, y = make_multimodal_classification(
    ...     200, intra_strength=0.0, inter_strength=2.0, random_state=0)
    >>> sorted(X), X["m0"].shape, np.bincount(y)
    (['m0', 'm1'], (200, 10), array([100, 100]))
    """
    if n_features < 2 * n_classes:
        raise ValueError(
            f"n_features must be >= 2 * n_classes = {2 * n_classes} (the intra and "
            f"inter signals use n_classes directions each); got {n_features!r}."
        )

    rng = check_random_state(random_state)
    y = rng.permutation(np.arange(n_samples) % n_classes)
    latents = rng.randint(n_classes, size=(n_samples, n_modalities))
    latents[:, -1] = (y - latents[:, :-1].sum(axis=1)) % n_classes

    X = {}
    for k in range(n_modalities):
        # Orthonormal columns: the first n_classes span the intra signal,
        # the next n_classes the inter signal.
        basis, _ = np.linalg.qr(rng.randn(n_features, 2 * n_classes))
        intra = _simplex_directions(n_classes, basis[:, :n_classes])
        inter = _simplex_directions(n_classes, basis[:, n_classes:])
        x = rng.randn(n_samples, n_features)
        x += intra_strength * intra[y] + inter_strength * inter[latents[:, k]]
        X[f"m{k}"] = x.astype(np.float32)
    return ModalityDict(X), y.astype(np.int64)


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_modalities": [Interval(Integral, 2, None, closed="left")],
        "n_features": [Interval(Integral, 2, None, closed="left")],
        "intra_strength": [Interval(Real, 0, None, closed="left")],
        "inter_strength": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_multimodal_regression(
    n_samples=1000,
    n_modalities=2,
    n_features=10,
    intra_strength=1.0,
    inter_strength=1.0,
    *,
    random_state=None,
):
    """Generate multi-modal data whose continuous target acts within and across modalities.

    The regression sibling of :func:`make_multimodal_classification`.
    Every modality ``x_k`` is ``n_features`` standard normal features, and
    the target is the sum of two parts along random, mutually orthogonal
    unit directions ``a_k`` and ``b_k`` of each modality:

    ``y = t + inter_strength * prod_k <b_k, x_k>``, with
    ``<a_k, x_k> = intra_strength * t + noise_k``.

    - **intra**: a latent ``t ~ N(0, 1)`` shows in every modality, with
      unit noise, at ``intra_strength``. Each modality alone is informative
      about ``t``, and the modalities are independent given ``t``, so
      (up to the prior) the product of per-modality Gaussian posteriors is
      the posterior given all of them: the intra-dominated case.
    - **inter**: ``inter_strength`` times the product of one standard
      normal feature of each modality. Its mean given any ``M - 1`` of the
      modalities is 0, so no single modality predicts it; only a model of
      all modalities jointly can.

    The part of ``t`` the modalities do not reveal is the target's noise.
    The best possible R² is ``(s + inter_strength**2) / (1 + inter_strength**2)``
    with ``s = M r / (1 + M r)``, ``r = intra_strength**2`` and ``M =
    n_modalities``: 0 with both strengths 0.

    Useful regimes (``n_modalities=2``):

    - ``intra_strength=0, inter_strength=2``: inter-dominated; every
      per-modality model predicts the mean, a joint model reaches R² 0.8.
    - ``intra_strength=1, inter_strength=0``: intra-dominated; the product
      of per-modality experts is (nearly) optimal, R² 2/3.
    - both non-zero: mixed; a model of both kinds of dependency does best.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples.
    n_modalities : int, default=2
        Number of modalities, at least 2.
    n_features : int, default=10
        Features per modality, at least 2 (the intra and inter directions;
        the other features are pure noise).
    intra_strength : float, default=1.0
        Signal-to-noise ratio (in standard deviations) of the latent ``t``
        in each modality, >= 0.
    inter_strength : float, default=1.0
        Weight of the cross-modality product in ``y``, >= 0.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions, latents and noise; an int gives the same data
        on every call.

    Returns
    -------
    X : ModalityDict
        ``"m0"``, ``"m1"``, ... -> float32 array of shape
        ``(n_samples, n_features)``.
    y : ndarray of shape (n_samples,)
        Targets (float64).

    Examples
    --------
    >>> from sk_i2m2.datasets import make_multimodal_regression
    >>> X, y = make_multimodal_regression(200, intra_strength=0.0, random_state=0)
    >>> sorted(X), X["m0"].shape, y.shape
    (['m0', 'm1'], (200, 10), (200,))
    """
    rng = check_random_state(random_state)
    latent = rng.randn(n_samples)
    y = latent.copy()
    inter = np.ones(n_samples)
    X = {}
    for k in range(n_modalities):
        # Orthonormal columns: the intra direction a_k, then the inter b_k.
        basis, _ = np.linalg.qr(rng.randn(n_features, 2))
        x = rng.randn(n_samples, n_features)
        x += intra_strength * latent[:, None] * basis[:, 0]
        inter *= x @ basis[:, 1]
        X[f"m{k}"] = x.astype(np.float32)
    y += inter_strength * inter
    return ModalityDict(X), y
