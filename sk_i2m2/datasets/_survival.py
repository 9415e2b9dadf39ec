"""A synthetic survival set: a clinical table and a digit image, with an interaction."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state

# Private, with no public equivalent: the parameter validation of
# scikit-learn's own public functions.
from sklearn.utils._param_validation import Interval, validate_params

from .._data import ModalityDict

__all__ = ["make_survival_digits"]


@validate_params(
    {
        "image_strength": [Interval(Real, 0, None, closed="left")],
        "table_strength": [Interval(Real, 0, None, closed="left")],
        "interaction_strength": [Interval(Real, 0, None, closed="left")],
        "censoring": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_survival_digits(
    image_strength=1.0,
    table_strength=1.0,
    interaction_strength=1.0,
    censoring=0.3,
    *,
    random_state=None,
):
    """Patients with a clinical table and an image, whose hazard depends on both and on their pairing.

    Each of the 1797 images of scikit-learn's bundled digits
    (:func:`sklearn.datasets.load_digits`, 8 x 8 pixels) is one patient's
    image; the patient's clinical table has 4 standard normal variables
    ``z``. The hazard is constant in time (exponential event times) with
    log-hazard

    ``image_strength * s(d) + table_strength * z_0 + interaction_strength * p(d) * z_1``

    where ``d`` is the digit shown, ``s(d) = (d - 4.5) / 2.87`` its
    standardised value (a property of the image alone, not linear in the
    pixels), and ``p(d)`` is +1 for an even digit and -1 for an odd one: the
    effect of ``z_1`` changes sign with the image, an inter-modality
    dependency. ``z_2`` and ``z_3`` are noise. Censoring times are
    exponential, scaled so that about ``censoring`` of the patients are
    censored. Everything is drawn from ``random_state``.

    Parameters
    ----------
    image_strength, table_strength, interaction_strength : float, default=1.0
        Coefficients of the three terms of the log-hazard.
    censoring : float in [0, 1), default=0.3
        Target share of censored patients (0: none).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ModalityDict
        ``"clinical"``: float32 array of shape (1797, 4); ``"image"``: float32
        array of shape (1797, 1, 8, 8), pixel values 0 to 16.
    y : structured ndarray of shape (1797,)
        Fields ``event`` (bool) and ``time`` (float), as
        ``sksurv.util.Surv.from_arrays`` builds them.

    Examples
    --------
    >>> from sk_i2m2.datasets import make_survival_digits
    >>> X, y = make_survival_digits(random_state=0)
    >>> X["image"].shape, X["clinical"].shape, y.dtype.names
    ((1797, 1, 8, 8), (1797, 4), ('event', 'time'))
    """
    rng = check_random_state(random_state)
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    images = digits.images[order].astype(np.float32)[:, None]
    digit = digits.target[order]
    table = rng.standard_normal((len(digit), 4)).astype(np.float32)
    parity = np.where(digit % 2 == 0, 1.0, -1.0)
    log_hazard = (
        image_strength * (digit - 4.5) / 2.87
        + table_strength * table[:, 0]
        + interaction_strength * parity * table[:, 1]
    )
    time = rng.exponential(np.exp(-log_hazard))
    event = np.ones(len(time), dtype=bool)
    if censoring > 0:
        # A censoring scale with about the requested share censored: the
        # share P(C < T) decreases in the scale; bisect on its log.
        draws = rng.exponential(size=len(time))
        low, high = -10.0, 10.0
        for _ in range(60):
            middle = (low + high) / 2
            if np.mean(np.exp(middle) * draws < time) > censoring:
                low = middle
            else:
                high = middle
        censor_time = np.exp(high) * draws
        event = time <= censor_time
        time = np.minimum(time, censor_time)
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return ModalityDict(clinical=table, image=images), y
