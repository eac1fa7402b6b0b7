"""Dense TF-IDF text vectors for the text-vs-image similarity experiment, NumPy only.

Product titles are tokenised into word unigrams and bigrams, weighted with sublinear TF
and smoothed IDF, and reduced to a fixed dimension by a seeded Gaussian random projection
(the default: it preserves TF-IDF cosines up to ~1/sqrt(dim) noise and fits in about a
second) or by truncated SVD (latent semantic analysis: shares directions between
co-occurring words, but fits in ~30 s on 44k titles and, on the Myntra titles, agreed
less often with the nearest neighbour's article type: 0.88 vs 0.91). Output rows are
L2-normalised so dot products are cosine similarities, comparable with image scores.
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

Reduction = Literal["svd", "random_projection"]

_TOKEN_PATTERN = re.compile(r"[^\W_]+", re.UNICODE)
_ARTIFACT_FORMAT_VERSION = 1


def tokenize(text: str) -> list[str]:
    """Split `text` into lowercase word unigrams followed by adjacent-word bigrams."""
    words = _TOKEN_PATTERN.findall(text.lower())
    return words + [f"{first} {second}" for first, second in zip(words, words[1:])]


@dataclass(frozen=True)
class _SparseRows:
    """CSR matrix [n_rows, n_columns] kept as three flat arrays (no SciPy dependency)."""

    row_starts: np.ndarray  # int64 [n_rows + 1]
    columns: np.ndarray  # int64 [nnz]
    values: np.ndarray  # float32 [nnz]
    n_columns: int

    @property
    def n_rows(self) -> int:
        return len(self.row_starts) - 1

    def row_of_each_value(self) -> np.ndarray:
        """Return int64 [nnz]: the row index of every stored value."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.row_starts))

    def transpose(self) -> "_SparseRows":
        """Return the CSR form of the transpose [n_columns, n_rows]."""
        order = np.argsort(self.columns, kind="stable")
        counts = np.bincount(self.columns, minlength=self.n_columns)
        return _SparseRows(
            row_starts=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            columns=self.row_of_each_value()[order],
            values=self.values[order],
            n_columns=self.n_rows,
        )

    def matmul(self, dense: np.ndarray, *, values_per_chunk: int = 65_536) -> np.ndarray:
        """Return self @ dense [n_rows, k] for dense [n_columns, k]."""
        result = np.zeros((self.n_rows, dense.shape[1]), dtype=np.result_type(self.values, dense))
        first_row = 0
        # Chunks hold about values_per_chunk stored values so the nnz x k temporary stays
        # bounded (a frequent term's column in the transpose can hold most of the corpus).
        while first_row < self.n_rows:
            budget_end = self.row_starts[first_row] + values_per_chunk
            last_row = int(np.searchsorted(self.row_starts, budget_end, side="right")) - 1
            last_row = min(max(last_row, first_row + 1), self.n_rows)
            value_start, value_stop = self.row_starts[first_row], self.row_starts[last_row]
            if value_stop > value_start:
                contributions = (
                    self.values[value_start:value_stop, None]
                    * dense[self.columns[value_start:value_stop]]
                )
                # reduceat misbehaves on empty segments, so only sum rows that have values.
                non_empty = np.flatnonzero(np.diff(self.row_starts[first_row : last_row + 1]))
                segment_starts = self.row_starts[first_row + non_empty] - value_start
                result[first_row + non_empty] = np.add.reduceat(
                    contributions, segment_starts, axis=0
                )
            first_row = last_row
        return result


def _orthonormal_columns(matrix: np.ndarray) -> np.ndarray:
    """Return an orthonormal basis [n, <=k] of the column space of float64 [n, k]."""
    # Eigen-decomposing the small k x k Gram matrix is ~50x faster than Householder QR
    # of a tall catalogue-sized matrix; running it twice restores the orthogonality that
    # squaring the condition number costs (the "CholeskyQR2" idea).
    for _ in range(2):
        eigenvalues, eigenvectors = np.linalg.eigh((matrix.T @ matrix).astype(np.float64))
        keep = eigenvalues > eigenvalues.max() * 1e-10
        whitening = (eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])).astype(matrix.dtype)
        matrix = matrix @ whitening
    return matrix


def _l2_normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale rows of float [n, d] to unit length; all-zero rows (no known words) stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class TfidfVectorizer:
    """Fit TF-IDF on a corpus and map texts to dense L2-normalised float32 [n, dim] vectors."""

    def __init__(
        self,
        *,
        dim: int = 256,
        max_features: int = 50_000,
        min_df: int = 1,
        reduction: Reduction = "random_projection",
        seed: int = 0,
    ) -> None:
        if dim < 1 or max_features < 1 or min_df < 1:
            raise ValueError("dim, max_features and min_df must be >= 1")
        if reduction not in ("svd", "random_projection"):
            raise ValueError(f"unknown reduction {reduction!r}")
        self.dim = dim
        self.max_features = max_features
        self.min_df = min_df
        self.reduction: Reduction = reduction
        self.seed = seed
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float64)
        self.components = np.zeros((dim, 0), dtype=np.float32)  # [dim, vocabulary size]

    @property
    def is_fitted(self) -> bool:
        return bool(self.vocabulary)

    def _term_frequencies(self, texts: Iterable[str]) -> list[collections.Counter]:
        return [collections.Counter(tokenize(text or "")) for text in texts]

    def _tfidf_rows(self, counts: Sequence[collections.Counter]) -> _SparseRows:
        """Build the row-L2-normalised sublinear TF-IDF matrix [n, vocabulary size]."""
        row_starts, columns, term_counts = [0], [], []
        for counter in counts:
            known = sorted(
                (self.vocabulary[term], count)
                for term, count in counter.items()
                if term in self.vocabulary
            )
            columns.extend(column for column, _ in known)
            term_counts.extend(count for _, count in known)
            row_starts.append(len(columns))
        starts = np.asarray(row_starts, dtype=np.int64)
        column_array = np.asarray(columns, dtype=np.int64)
        # Sublinear TF: a title repeating "shirt" is not twice as much about shirts.
        values = (1.0 + np.log(np.asarray(term_counts, dtype=np.float64))) * self.idf[column_array]
        squared_sums = np.zeros(len(starts) - 1)
        non_empty = np.flatnonzero(np.diff(starts))
        if len(values):
            squared_sums[non_empty] = np.add.reduceat(values**2, starts[non_empty])
        row_norms = np.repeat(np.sqrt(squared_sums), np.diff(starts))
        return _SparseRows(
            row_starts=starts,
            columns=column_array,
            values=(values / np.where(row_norms > 0, row_norms, 1.0)).astype(np.float32),
            n_columns=len(self.vocabulary),
        )

    def fit(self, texts: Sequence[str]) -> "TfidfVectorizer":
        """Learn vocabulary, IDF and the projection [dim, vocabulary] from a corpus of texts."""
        counts = self._term_frequencies(texts)
        document_frequency = collections.Counter(term for counter in counts for term in counter)
        kept = [(term, df) for term, df in document_frequency.items() if df >= self.min_df]
        # Most frequent terms first, ties alphabetical, so the vocabulary is deterministic.
        kept.sort(key=lambda item: (-item[1], item[0]))
        kept = kept[: self.max_features]
        if not kept:
            raise ValueError("no term survives min_df; cannot fit an empty vocabulary")
        self.vocabulary = {term: column for column, (term, _) in enumerate(kept)}
        n_documents = len(counts)
        frequencies = np.array([df for _, df in kept], dtype=np.float64)
        # Smoothed IDF: as if one extra document contained every term, so no division by 0.
        self.idf = np.log((1.0 + n_documents) / (1.0 + frequencies)) + 1.0
        matrix = self._tfidf_rows(counts)
        if self.reduction == "svd":
            self.components = self._truncated_svd_components(matrix)
        else:
            self.components = self._random_projection_components(len(self.vocabulary))
        return self

    def _random_projection_components(self, vocabulary_size: int) -> np.ndarray:
        """Return a seeded Gaussian projection [dim, vocabulary] (Johnson-Lindenstrauss)."""
        rng = np.random.default_rng(self.seed)
        projection = rng.standard_normal((self.dim, vocabulary_size)) / np.sqrt(self.dim)
        return projection.astype(np.float32)

    def _truncated_svd_components(
        self, matrix: _SparseRows, *, power_iterations: int = 2
    ) -> np.ndarray:
        """Return the top right singular vectors [dim, vocabulary] by randomized SVD."""
        # Randomized range finder with subspace iteration: Halko, Martinsson & Tropp (2011),
        # "Finding structure with randomness", algorithms 4.4 and 5.1.
        transposed = matrix.transpose()
        rank = min(self.dim, matrix.n_rows, matrix.n_columns)
        sketch_width = min(rank + 10, matrix.n_rows, matrix.n_columns)
        rng = np.random.default_rng(self.seed)
        sketch = rng.standard_normal((matrix.n_columns, sketch_width), dtype=np.float32)
        basis = _orthonormal_columns(matrix.matmul(sketch))
        for _ in range(power_iterations):
            # Re-orthonormalising each half-step keeps small singular values from drowning in
            # rounding error (the "subspace iteration" variant).
            column_basis = _orthonormal_columns(transposed.matmul(basis))
            basis = _orthonormal_columns(matrix.matmul(column_basis))
        projected = transposed.matmul(basis).T  # [sketch_width, vocabulary]
        # SVD of the wide sketch through its small Gram matrix: B B^T = U S^2 U^T, V^T = S^-1 U^T B.
        squared_singular_values, left_vectors = np.linalg.eigh(
            (projected @ projected.T).astype(np.float64)
        )
        order = np.argsort(squared_singular_values)[::-1]
        squared_singular_values = squared_singular_values[order]
        left_vectors = left_vectors[:, order]
        useful = squared_singular_values > squared_singular_values[0] * 1e-10
        rank = min(rank, int(useful.sum()))
        right_vectors = (left_vectors[:, :rank].T @ projected) / np.sqrt(
            squared_singular_values[:rank]
        )[:, None]
        components = np.zeros((self.dim, matrix.n_columns), dtype=np.float32)
        # Tiny corpora have fewer directions than `dim`: the rest stay zero so the output
        # dimension is fixed whatever the corpus size.
        components[:rank] = right_vectors[:rank]
        return components

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Map texts to L2-normalised float32 [n, dim]; texts with no known term give zero rows."""
        if not self.is_fitted:
            raise RuntimeError("fit() or load() the vectorizer before transform()")
        matrix = self._tfidf_rows(self._term_frequencies(texts))
        return _l2_normalise_rows(matrix.matmul(np.ascontiguousarray(self.components.T)))

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """Fit on texts and return their vectors float32 [n, dim]."""
        return self.fit(texts).transform(texts)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state to a .npz file (no pickle, safe to load from anywhere)."""
        if not self.is_fitted:
            raise RuntimeError("nothing to save: the vectorizer is not fitted")
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(
            path,
            format_version=np.int64(_ARTIFACT_FORMAT_VERSION),
            terms=np.array(terms, dtype=np.str_),
            idf=self.idf,
            components=self.components,
            settings=np.array(
                [self.dim, self.max_features, self.min_df, self.seed], dtype=np.int64
            ),
            reduction=np.array(self.reduction, dtype=np.str_),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TfidfVectorizer":
        """Read a vectorizer written by save()."""
        with np.load(path, allow_pickle=False) as archive:
            version = int(archive["format_version"])
            if version != _ARTIFACT_FORMAT_VERSION:
                raise ValueError(f"unsupported TF-IDF artifact version {version}")
            dim, max_features, min_df, seed = (int(value) for value in archive["settings"])
            vectorizer = cls(
                dim=dim, max_features=max_features, min_df=min_df,
                reduction=str(archive["reduction"]), seed=seed,  # type: ignore[arg-type]
            )
            vectorizer.vocabulary = {
                str(term): column for column, term in enumerate(archive["terms"])
            }
            vectorizer.idf = archive["idf"].astype(np.float64)
            vectorizer.components = archive["components"].astype(np.float32)
        return vectorizer


def hybrid_scores(
    *, image_scores: np.ndarray, text_scores: np.ndarray, text_weight: float
) -> np.ndarray:
    """Blend same-shaped similarity arrays as (1 - text_weight) * image + text_weight * text."""
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"text_weight must be in [0, 1], got {text_weight}")
    image_scores = np.asarray(image_scores, dtype=np.float32)
    text_scores = np.asarray(text_scores, dtype=np.float32)
    if image_scores.shape != text_scores.shape:
        raise ValueError(f"shape mismatch: {image_scores.shape} vs {text_scores.shape}")
    return (1.0 - text_weight) * image_scores + text_weight * text_scores
