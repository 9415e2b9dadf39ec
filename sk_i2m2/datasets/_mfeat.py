"""UCI Multiple Features (mfeat): handwritten digits described by six views."""

from __future__ import annotations

from importlib import resources

import numpy as np

# Private, with no public equivalent: the parameter validation of
# scikit-learn's own public functions.
from sklearn.utils._param_validation import validate_params

from .._data import ModalityDict

#: View name -> (number of features, description).
MFEAT_VIEWS = {
    "fou": (76, "Fourier coefficients of the character shapes"),
    "fac": (216, "profile correlations"),
    "kar": (64, "Karhunen-Loeve coefficients"),
    "pix": (240, "pixel averages in 2 x 3 windows (a 16 x 15 image)"),
    "zer": (47, "Zernike moments"),
    "mor": (6, "morphological features"),
}


@validate_params(
    {"views": ["array-like", None], "as_frame": ["boolean"], "pix_as_image": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def load_mfeat(views=None, *, as_frame=False, pix_as_image=False):
    """Load the UCI Multiple Features digits (2000 samples, 10 classes).

    Handwritten digits '0'..'9', 200 of each, described by six views
    (feature sets) of the same images. The data ship with this package
    (UCI Machine Learning Repository, R. P. W. Duin; CC BY 4.0; see
    ``sk_i2m2/datasets/data/mfeat-LICENSE.txt``); nothing is downloaded.

    Parameters
    ----------
    views : list of str or None, default=None
        Views to return, in this order; ``None`` returns all six
        (``"fou", "fac", "kar", "pix", "zer", "mor"``, see ``MFEAT_VIEWS``).
    as_frame : bool, default=False
        Return each view as a pandas DataFrame with columns
        ``"<view>_<i>"`` instead of a float32 array.
    pix_as_image : bool, default=False
        Return the ``"pix"`` view as 16 x 15 grayscale images of shape
        ``(2000, 1, 16, 15)`` (ignored with ``as_frame=True``).

    Returns
    -------
    X : ModalityDict
        View name -> float32 array of shape (2000, n_features) (or
        DataFrame). A ``ModalityDict`` can be split by scikit-learn.
    y : ndarray of shape (2000,)
        Digit labels 0..9 (int64), in blocks of 200 per class.
    """
    views = list(MFEAT_VIEWS) if views is None else list(views)
    unknown = [v for v in views if v not in MFEAT_VIEWS]
    if unknown:
        raise ValueError(f"Unknown mfeat view {unknown[0]!r}; choose from {list(MFEAT_VIEWS)}.")
    path = resources.files(__package__) / "data" / "mfeat.npz"
    with resources.as_file(path) as file, np.load(file) as data:
        arrays = {v: data[v] for v in views}
        y = data["target"].astype(np.int64)
    if as_frame:
        import pandas as pd

        X = {
            v: pd.DataFrame(a, columns=[f"{v}_{i}" for i in range(a.shape[1])])
            for v, a in arrays.items()
        }
    else:
        X = dict(arrays)
        if pix_as_image and "pix" in X:
            # 240 pixel averages, row-major over a 16 x 15 grid.
            X["pix"] = X["pix"].reshape(-1, 1, 16, 15)
    return ModalityDict(X), y
