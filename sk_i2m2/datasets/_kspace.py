"""k-space magnitude and phase of bundled digit images: a fastMRI-like modality pair."""

from __future__ import annotations

import numpy as np

# Private, with no public equivalent: the parameter validation of
# scikit-learn's own public functions.
from sklearn.utils._param_validation import StrOptions, validate_params

from .._data import ModalityDict
from ._mfeat import load_mfeat

_SOURCES = ("mfeat", "sklearn")


@validate_params({"source": [StrOptions(set(_SOURCES))]}, prefer_skip_nested_validation=True)
def load_kspace_digits(source="mfeat"):
    """Load digit images as the magnitude and phase of their k-space.

    An MRI scanner measures k-space, the 2-D Fourier transform of the
    image; fastMRI-style multi-modal studies (e.g. the knee and brain
    experiments of the I2M2 paper, which found intra-modality dependencies
    to dominate there) treat its magnitude and its phase as two modalities.
    This loader builds such a pair from bundled handwritten digits, with no
    download: each image is transformed with a 2-D FFT, the zero frequency
    is shifted to the centre, and

    - ``"magnitude"`` is ``log(1 + |k|)`` (log-compressed, as the
      magnitude spans orders of magnitude),
    - ``"phase"`` is ``angle(k)`` in radians, in ``[-pi, pi]``.

    Either modality alone is a weaker description of the digit than the
    image; together they determine it.

    Parameters
    ----------
    source : {"mfeat", "sklearn"}, default="mfeat"
        The images: ``"mfeat"`` the 2000 16 x 15 digits of the UCI Multiple
        Features ``"pix"`` view (see :func:`load_mfeat`); ``"sklearn"`` the
        1797 8 x 8 digits of :func:`sklearn.datasets.load_digits`.

    Returns
    -------
    X : ModalityDict
        ``"magnitude"`` and ``"phase"`` -> float32 arrays of shape
        ``(n_samples, 1, H, W)``: ``(2000, 1, 16, 15)`` for ``"mfeat"``,
        ``(1797, 1, 8, 8)`` for ``"sklearn"``.
    y : ndarray of shape (n_samples,)
        Digit labels 0..9 (int64).

    Examples
    --------
    >>> from sk_i2m2.datasets import load_kspace_digits
    >>> X, y = load_kspace_digits()
    >>> X["magnitude"].shape, X["phase"].dtype, y.shape
    ((2000, 1, 16, 15), dtype('float32'), (2000,))
    """
    if source == "mfeat":
        views, y = load_mfeat(["pix"], pix_as_image=True)
        images = views["pix"][:, 0]
    else:  # "sklearn"
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, y = digits.images, digits.target.astype(np.int64)
    kspace = np.fft.fftshift(np.fft.fft2(images.astype(np.float64)), axes=(-2, -1))
    X = {
        "magnitude": np.log1p(np.abs(kspace))[:, None].astype(np.float32),
        "phase": np.angle(kspace)[:, None].astype(np.float32),
    }
    return ModalityDict(X), y
