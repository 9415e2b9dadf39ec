import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from benchmarks import comparison as bench
from sk_i2m2 import ModalityDict
from sk_i2m2.cli import main
from sk_i2m2.datasets import (
    MFEAT_VIEWS,
    load_kspace_digits,
    load_mfeat,
    make_multimodal_classification,
)


def test_load_mfeat_shapes_and_dtypes():
    X, y = load_mfeat()
    assert isinstance(X, ModalityDict) and list(X) == list(MFEAT_VIEWS)
    for view, (n_features, _) in MFEAT_VIEWS.items():
        assert X[view].shape == (2000, n_features) and X[view].dtype == np.float32
    assert y.shape == (2000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [200] * 10)
    frames, _ = load_mfeat(["zer"], as_frame=True)
    assert isinstance(frames["zer"], pd.DataFrame) and frames["zer"].shape == (2000, 47)


@pytest.mark.parametrize("source, n, shape", [("mfeat", 2000, (16, 15)), ("sklearn", 1797, (8, 8))])
def test_load_kspace_digits_is_the_fft_of_the_images(source, n, shape):
    X, y = load_kspace_digits(source)
    assert isinstance(X, ModalityDict) and list(X) == ["magnitude", "phase"]
    for name in X:
        assert X[name].shape == (n, 1, *shape) and X[name].dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64 and set(y) == set(range(10))
    assert X["magnitude"].min() >= 0
    assert np.abs(X["phase"]).max() <= np.pi + 1e-6
    # Magnitude and phase together give back the images.
    kspace = np.expm1(X["magnitude"][:5, 0].astype(np.float64)) * np.exp(1j * X["phase"][:5, 0])
    images = np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1))).real
    if source == "mfeat":
        expected = load_mfeat(["pix"], pix_as_image=True)[0]["pix"][:5, 0]
    else:
        from sklearn.datasets import load_digits

        expected = load_digits().images[:5]
    np.testing.assert_allclose(images, expected, atol=1e-3)


@pytest.mark.parametrize(
    "load, kwargs, match",
    [
        (
            load_kspace_digits,
            dict(source="mnist"),
            r"'source' parameter of load_kspace_digits must be a str among \{",
        ),
        (load_mfeat, dict(views="pix"), "'views' parameter of load_mfeat must be an array-like"),
        (load_mfeat, dict(as_frame="yes"), "'as_frame' parameter of load_mfeat"),
        (load_mfeat, dict(pix_as_image=None), "'pix_as_image' parameter of load_mfeat"),
    ],
)
def test_loaders_validate_their_parameters(load, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        load(**kwargs)
    with pytest.raises(ValueError, match="Unknown mfeat view 'xyz'"):
        load_mfeat(["pix", "xyz"])


def test_generator_shapes_balance_and_determinism():
    X, y = make_multimodal_classification(
        301, n_modalities=3, n_features=8, n_classes=3, random_state=0
    )
    assert isinstance(X, ModalityDict) and list(X) == ["m0", "m1", "m2"]
    assert all(X[m].shape == (301, 8) and X[m].dtype == np.float32 for m in X)
    assert y.shape == (301,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [101, 100, 100])
    X2, y2 = make_multimodal_classification(
        301, n_modalities=3, n_features=8, n_classes=3, random_state=0
    )
    np.testing.assert_array_equal(y, y2)
    for m in X:
        np.testing.assert_array_equal(X[m], X2[m])
    X3, _ = make_multimodal_classification(
        301, n_modalities=3, n_features=8, n_classes=3, random_state=1
    )
    assert not np.array_equal(X["m0"], X3["m0"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), r"'n_samples' parameter .* an int in the range \[1, inf\)"),
        (dict(n_modalities=1), r"'n_modalities' parameter .* an int in the range \[2, inf\)"),
        (dict(n_modalities=2.0), "'n_modalities' parameter"),
        (dict(n_classes=1), r"'n_classes' parameter .* an int in the range \[2, inf\)"),
        (dict(intra_strength=-1.0), r"'intra_strength' parameter .* range \[0.0, inf\)"),
        (dict(inter_strength=float("nan")), "'inter_strength' parameter"),
        (dict(random_state="seed"), "'random_state' parameter"),
    ],
)
def test_generator_rejects_bad_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        make_multimodal_classification(**kwargs)
    with pytest.raises(ValueError, match=r"n_features must be >= 2 \* n_classes = 4"):
        make_multimodal_classification(n_features=3)


def _split_scores(X, y, features):
    """Held-out accuracy of a logistic regression on ``features(X)``."""
    Z = features(X)
    n_train = len(y) * 2 // 3
    clf = LogisticRegression(max_iter=1000).fit(Z[:n_train], y[:n_train])
    return clf.score(Z[n_train:], y[n_train:])


def _cross_products(X):
    """All products of one feature of m0 and one of m1: a model of the interaction."""
    return np.einsum("ni,nj->nij", X["m0"], X["m1"]).reshape(len(X["m0"]), -1)


def test_inter_only_regime_is_invisible_per_modality():
    X, y = make_multimodal_classification(
        3000, intra_strength=0.0, inter_strength=2.0, random_state=0
    )
    for m in X:
        assert _split_scores(X, y, lambda X, m=m: X[m]) < 0.56
    # Not even a linear model on both modalities side by side sees it ...
    assert _split_scores(X, y, lambda X: np.hstack([X["m0"], X["m1"]])) < 0.56
    # ... but one of their interaction does (Bayes accuracy about 0.955).
    assert _split_scores(X, y, _cross_products) > 0.85


def test_intra_only_regime_is_per_modality():
    X, y = make_multimodal_classification(
        3000, intra_strength=0.7, inter_strength=0.0, random_state=0
    )
    # Phi(0.7) = 0.76 per modality and Phi(0.7 * sqrt(2)) = 0.84 from both.
    for m in X:
        assert 0.70 < _split_scores(X, y, lambda X, m=m: X[m]) < 0.82
    assert _split_scores(X, y, lambda X: np.hstack([X["m0"], X["m1"]])) > 0.80
    # Modalities are independent given y: no cross-modal interaction signal.
    assert _split_scores(X, y, _cross_products) < 0.56


def test_multiclass_inter_only_regime_is_near_chance_per_modality():
    X, y = make_multimodal_classification(
        3000, n_features=8, n_classes=3, intra_strength=0.0, inter_strength=2.5, random_state=0
    )
    for m in X:
        assert _split_scores(X, y, lambda X, m=m: X[m]) < 0.40
    assert _split_scores(X, y, _cross_products) > 0.70


def test_quick_settings_name_known_datasets():
    assert set(bench.QUICK["datasets"]) <= set(bench.DATASETS)
    assert {d.expect for d in bench.DATASETS.values()} == {"inter", "intra", "both"}


def test_benchmark_cli_runs_a_tiny_configuration(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "RESULTS.md").write_text("# Benchmarks\n\n## Speed\nkept\n")
    main(
        [
            "benchmark",
            "--datasets",
            "synthetic-inter",
            "--seeds",
            "2",
            "--max-epochs",
            "1",
            "--output-dir",
            str(tmp_path),
        ]
    )
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Speed\nkept" in text
    assert "sk-i2m2 benchmark --datasets synthetic-inter" in text
    for model in [
        "expert: m0",
        "expert: m1",
        "intra",
        "inter (concat)",
        "inter (lrtf)",
        "**I2M2**",
        "I2M2 ≈ inter ≫ intra",
    ]:
        assert model in text
    assert (tmp_path / "compare.png").stat().st_size > 1000
    assert "synthetic inter: I2M2 ≈ inter ≫ intra" in capsys.readouterr().out


def test_run_benchmark_returns_scores_per_fit():
    results = bench.run_benchmark(["synthetic-intra"], seeds=[3], max_epochs=1)
    assert list(results["model"]) == bench.model_names("synthetic-intra")
    assert (results["seed"] == 3).all()
    assert results[["accuracy", "auroc"]].apply(lambda s: s.between(0, 1)).all().all()
    summary = bench.summarize(results)
    assert (summary["accuracy_std"] == 0).all()
    [check] = bench.check_claims(summary)
    assert check["claim"] == "I2M2 ≈ intra ≥ inter" and isinstance(check["holds"], bool)
