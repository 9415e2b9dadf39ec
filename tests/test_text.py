"""Text as a modality: a scikit-learn vectoriser in PerModality, or a frozen embedding callable."""

import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.encoders import MLPEncoder, TextEmbedding

WORDS = {0: ["clear", "normal", "quiet", "stable"], 1: ["cough", "fever", "pain", "rash"]}
CALLS = []  # number of texts per call of hashed_bag_of_words


def hashed_bag_of_words(texts, n_features=32):
    """A deterministic toy sentence embedding: hashed word counts."""
    CALLS.append(len(texts))
    out = np.zeros((len(texts), n_features), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.split():
            out[i, zlib.crc32(word.encode()) % n_features] += 1.0
    return out


def make_notes(n, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    # Noisy notes: words of the patient's class, mixed with words of the other.
    notes = [" ".join(rng.choice(WORDS[c] * 3 + WORDS[1 - c], size=5)) for c in y]
    tab = (rng.randn(n, 3) + 0.3 * (2 * y - 1)[:, None]).astype(np.float32)
    return notes, tab, y


@pytest.mark.parametrize("container", [list, np.array, pd.Series])
def test_text_through_an_embedding_callable(container):
    notes, tab, y = make_notes(200)
    X = {"notes": container(notes) if container is not np.array else np.array(notes, object)}
    X["tab"] = tab
    CALLS.clear()
    clf = I2M2Classifier(
        encoders={"notes": TextEmbedding(hashed_bag_of_words)},
        max_epochs=8,
        lr=1e-2,
        cv=None,
        random_state=0,
    ).fit(X, y)
    assert CALLS == [200]  # once per fit, over every row
    assert clf.input_shapes_["notes"] == (32,)
    notes_new, tab_new, y_new = make_notes(80, seed=1)
    assert clf.score({"notes": notes_new, "tab": tab_new}, y_new) > 0.8
    assert CALLS[1:] == [80]  # once per prediction
    # The embedding feeds a linear expert by default, a given encoder otherwise.
    assert clf.module_.experts["notes"].head.in_features == 32
    wide = I2M2Classifier(
        encoders={"notes": TextEmbedding(hashed_bag_of_words, MLPEncoder(hidden_sizes=(8,)))},
        max_epochs=1,
        cv=None,
    ).fit(X, y)
    assert wide.module_.experts["notes"].head.in_features == 8


def test_text_through_a_vectoriser_in_per_modality():
    notes, tab, y = make_notes(200)
    notes_new, tab_new, y_new = make_notes(80, seed=1)
    pipe = make_pipeline(
        PerModality({"notes": TfidfVectorizer()}),
        I2M2Classifier(max_epochs=8, lr=1e-2, cv=None, random_state=0),
    )
    pipe.fit(ModalityDict(notes=pd.Series(notes), tab=tab), y)
    assert pipe.score(ModalityDict(notes=notes_new, tab=tab_new), y_new) > 0.8


def test_missing_texts_make_samples_miss_the_modality():
    notes, tab, y = make_notes(120)
    notes = [None if i < 10 else t for i, t in enumerate(notes)]
    notes[10] = float("nan")
    clf = I2M2Classifier(
        encoders={"notes": TextEmbedding(hashed_bag_of_words)}, max_epochs=2, cv=None
    ).fit({"notes": notes, "tab": tab}, y)
    assert clf.missing_rate_["notes"] == pytest.approx(11 / 120)
    proba = clf.expert_proba({"notes": notes[:20], "tab": tab[:20]})["notes"]
    assert np.isnan(proba[:11]).all() and not np.isnan(proba[11:]).any()


def test_strings_are_refused_without_a_text_embedding():
    notes, tab, y = make_notes(40)
    with pytest.raises(ValueError, match="Modality 'notes': could not convert string to float"):
        I2M2Classifier(max_epochs=1).fit({"notes": notes, "tab": tab}, y)
    # ... and a text modality takes strings only.
    with pytest.raises(TypeError, match="Modality 'tab' has a TextEmbedding encoder, so it takes"):
        I2M2Classifier(encoders={"tab": TextEmbedding(hashed_bag_of_words)}).fit(
            {"notes2": tab, "tab": list(tab)}, y
        )
    bad_shape = TextEmbedding(lambda texts: np.zeros(len(texts)))
    with pytest.raises(ValueError, match=r"must return an array of shape \(n_texts, n_features\)"):
        I2M2Classifier(encoders={"notes": bad_shape}).fit({"notes": notes, "tab": tab}, y)


def test_text_model_saves_and_loads_with_its_embedding(tmp_path):
    notes, tab, y = make_notes(120)
    X = {"notes": notes, "tab": tab}
    clf = I2M2Classifier(
        encoders={"notes": TextEmbedding(hashed_bag_of_words)}, max_epochs=2, cv=None
    ).fit(X, y)
    clf.save(tmp_path)
    with pytest.raises(ValueError, match=r"custom text embedding \(.*hashed_bag_of_words\)"):
        I2M2Classifier.load(tmp_path)
    loaded = I2M2Classifier.load(tmp_path, encoders={"notes": hashed_bag_of_words})
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-5)
