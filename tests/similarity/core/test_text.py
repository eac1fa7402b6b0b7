"""TF-IDF text vectors and the hybrid image/text score."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.core.text import TfidfVectorizer, hybrid_scores, tokenize

TITLES = [
    "Turtle Check Men Navy Blue Shirt",
    "Turtle Check Men Yellow Shirt",
    "Peter England Men Party Blue Jeans",
    "Levis Men Blue Slim Fit Jeans",
    "Titan Women Silver Watch",
    "Fastrack Women Black Analog Watch",
    "Puma Men Grey T-shirt",
    "Nike Men Black Running Shoes",
    "Adidas Women Black Sports Shoes",
    "Lavie Women Brown Handbag",
    "Baggit Women Red Handbag",
    "Jealous 21 Women Purple Top",
]


def cosine(vectors: np.ndarray, first: int, second: int) -> float:
    return float(vectors[first] @ vectors[second])


def test_tokenize_lowercases_and_adds_bigrams():
    assert tokenize("Men's T-Shirt") == ["men", "s", "t", "shirt", "men s", "s t", "t shirt"]
    assert tokenize("Ködern Über") == ["ködern", "über", "ködern über"]
    assert tokenize("") == []


@pytest.mark.parametrize("reduction", ["svd", "random_projection"])
def test_vectors_have_fixed_dim_and_unit_length(reduction):
    vectors = TfidfVectorizer(dim=64, reduction=reduction).fit_transform(TITLES)
    assert vectors.shape == (len(TITLES), 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("reduction", ["svd", "random_projection"])
def test_similar_titles_score_higher_than_unrelated_ones(reduction):
    vectors = TfidfVectorizer(dim=128, reduction=reduction).fit_transform(TITLES)
    assert cosine(vectors, 0, 1) > cosine(vectors, 0, 4) + 0.2  # shirt vs shirt / watch
    assert cosine(vectors, 4, 5) > cosine(vectors, 4, 9)  # watch vs watch / handbag


def test_svd_with_all_directions_kept_preserves_tfidf_cosines():
    vectorizer = TfidfVectorizer(dim=256, reduction="svd").fit(TITLES)
    reduced = vectorizer.transform(TITLES)
    sparse = vectorizer._tfidf_rows(vectorizer._term_frequencies(TITLES))
    dense = sparse.matmul(np.eye(sparse.n_columns, dtype=np.float32))
    assert np.allclose(reduced @ reduced.T, dense @ dense.T, atol=1e-4)


def test_unknown_or_empty_text_gives_a_zero_vector():
    vectors = TfidfVectorizer(dim=32).fit(TITLES).transform(["zzz qqq", ""])
    assert not vectors.any()


def test_fitting_is_deterministic_for_a_seed():
    first = TfidfVectorizer(dim=32, seed=7).fit_transform(TITLES)
    second = TfidfVectorizer(dim=32, seed=7).fit_transform(TITLES)
    other_seed = TfidfVectorizer(dim=32, seed=8).fit_transform(TITLES)
    assert np.array_equal(first, second)
    assert not np.allclose(first, other_seed)


def test_vocabulary_respects_min_df_and_max_features():
    vectorizer = TfidfVectorizer(dim=16, min_df=2).fit(TITLES)
    assert "men" in vectorizer.vocabulary and "turtle check" in vectorizer.vocabulary
    assert "titan" not in vectorizer.vocabulary
    capped = TfidfVectorizer(dim=16, max_features=3).fit(TITLES)
    assert sorted(capped.vocabulary) == ["black", "men", "women"]  # the 3 most frequent
    with pytest.raises(ValueError, match="min_df"):
        TfidfVectorizer(min_df=100).fit(TITLES)


@pytest.mark.parametrize("reduction", ["svd", "random_projection"])
def test_save_and_load_round_trip(tmp_path, reduction):
    vectorizer = TfidfVectorizer(dim=48, reduction=reduction, min_df=1, seed=3).fit(TITLES)
    path = tmp_path / "tfidf.npz"
    vectorizer.save(path)
    loaded = TfidfVectorizer.load(path)
    assert loaded.reduction == reduction and loaded.dim == 48 and loaded.seed == 3
    queries = ["blue shirt for men", "black watch"]
    assert np.array_equal(loaded.transform(queries), vectorizer.transform(queries))


def test_unfitted_vectorizer_refuses_to_work(tmp_path):
    with pytest.raises(RuntimeError):
        TfidfVectorizer().transform(["shirt"])
    with pytest.raises(RuntimeError):
        TfidfVectorizer().save(tmp_path / "x.npz")


def test_hybrid_scores_blend_image_and_text():
    image = np.array([[1.0, 0.0], [0.5, 0.5]])
    text = np.array([[0.0, 1.0], [0.25, 0.75]])
    assert np.allclose(hybrid_scores(image_scores=image, text_scores=text, text_weight=0.0), image)
    assert np.allclose(hybrid_scores(image_scores=image, text_scores=text, text_weight=1.0), text)
    blended = hybrid_scores(image_scores=image, text_scores=text, text_weight=0.25)
    assert np.allclose(blended, 0.75 * image + 0.25 * text)
    assert blended.dtype == np.float32


def test_hybrid_scores_validate_inputs():
    with pytest.raises(ValueError, match="shape"):
        hybrid_scores(image_scores=np.zeros(3), text_scores=np.zeros(4), text_weight=0.5)
    with pytest.raises(ValueError, match="text_weight"):
        hybrid_scores(image_scores=np.zeros(3), text_scores=np.zeros(3), text_weight=1.5)
