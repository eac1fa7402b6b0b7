"""Keras preprocessing of raw product fields, and the cached feature tensors used for training.

The preprocessor is a Keras model from raw inputs (strings, float vectors) to features (sparse TF-IDF
rows, token ids, lookup indices, vectors). It is adapted on the training products, run once over them so
the epochs train on cached features, and saved inside the end-to-end model so serving takes raw fields.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from classifier.core.config import FeatureConfig, FieldSpec
from classifier.core.frames import ProductFrame

PREPROCESS_CHUNK = 8192
# StringLookup / TextVectorization "int" mode reserve index 0 (mask/padding) and 1 (out of vocabulary).
RESERVED_INDICES = 2
# Vocabulary of a field with no value at all in the training products (a lookup layer with an empty
# vocabulary fails at call time). Text is lower-cased (and, for words, stripped of brackets) and categorical
# values carry no NUL, so neither placeholder ever matches a real product.
EMPTY_TEXT_VOCABULARY = ["[NONE]"]
EMPTY_CATEGORICAL_VOCABULARY = ["\x00[NONE]"]  # not a bare NUL: NumPy strips trailing NULs


@keras.saving.register_keras_serializable(package="classifier_core")
class TfIdfWeighting(keras.layers.Layer):
    """Weight sparse token counts [batch, vocabulary] by smoothed IDF and L2-normalise each row.

    TextVectorization's own "tf_idf" mode cannot emit sparse tensors (Keras 3.15 fails to broadcast the
    IDF vector over a SparseTensor), and dense TF-IDF rows of 8,000 floats per product would dominate
    training and serving time; this layer keeps the rows sparse. Only the TensorFlow backend is supported.
    """

    def __init__(self, vocabulary_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.idf = self.add_weight(shape=(vocabulary_size,), initializer="ones", trainable=False, name="idf")

    def adapt_counts(self, document_frequency: np.ndarray, n_documents: int) -> None:
        """Set idf = ln((1 + n) / (1 + df)) + 1 from document frequencies int [vocabulary]; index 0 gets 0.

        Index 0 is TextVectorization's out-of-vocabulary bucket. Left in, every unseen n-gram of a product would
        pile into it with the highest IDF (with a vocabulary from 100 titles it held ~80 % of a new product's
        norm, and cost 14 accuracy points at 100 labels); unseen terms are ignored instead, as scikit-learn does.
        """
        idf = np.log((1.0 + n_documents) / (1.0 + document_frequency)).astype(np.float32) + 1.0
        idf[0] = 0.0
        self.idf.assign(idf)

    def call(self, counts):
        values = tf.cast(counts.values, self.compute_dtype) * tf.gather(self.idf, counts.indices[:, 1])
        rows = counts.indices[:, 0]
        norms = tf.sqrt(tf.math.unsorted_segment_sum(values * values, rows, counts.dense_shape[0]))
        return tf.SparseTensor(counts.indices, tf.math.divide_no_nan(values, tf.gather(norms, rows)),
                               counts.dense_shape)

    def compute_output_spec(self, counts):
        return keras.KerasTensor(counts.shape, dtype=self.compute_dtype, sparse=True)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


def raw_inputs(config: FeatureConfig) -> dict[str, keras.KerasTensor]:
    """Return the end-to-end model's inputs: a string per text/categorical field, vectors + presence per dense."""
    inputs = {}
    for spec in config.fields:
        if spec.kind == "dense":
            inputs[spec.name] = keras.Input(shape=(spec.dim,), dtype="float32", name=spec.name)
            inputs[f"{spec.name}_present"] = keras.Input(shape=(1,), dtype="float32", name=f"{spec.name}_present")
        else:
            inputs[spec.name] = keras.Input(shape=(), dtype="string", name=spec.name)
    return inputs


def feature_inputs(config: FeatureConfig) -> dict[str, keras.KerasTensor]:
    """Return the network's inputs, the preprocessor's outputs; needs a fitted config (vocabulary sizes)."""
    inputs = {}
    for spec in config.fields:
        if spec.kind == "text" and spec.representation == "sequence":
            inputs[spec.name] = keras.Input(shape=(spec.sequence_length,), dtype="int64", name=spec.name)
        elif spec.kind == "text":
            inputs[spec.name] = keras.Input(shape=(_fitted_size(spec),), sparse=True, name=spec.name)
        elif spec.kind == "categorical":
            _fitted_size(spec)
            inputs[spec.name] = keras.Input(shape=(), dtype="int64", name=spec.name)
        else:
            inputs[spec.name] = keras.Input(shape=(spec.dim,), dtype="float32", name=spec.name)
            inputs[f"{spec.name}_present"] = keras.Input(shape=(1,), dtype="float32", name=f"{spec.name}_present")
    return inputs


def frame_inputs(frame: ProductFrame, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Return the raw model inputs of a frame: object [n] strings, float32 [n, d] vectors, float32 [n, 1] flags."""
    inputs = {}
    for spec in config.fields:
        if spec.kind == "dense":
            inputs[spec.name], inputs[f"{spec.name}_present"] = frame.dense_column(spec.column, dim=spec.dim)
        else:
            inputs[spec.name] = getattr(frame, spec.column)
    return inputs


def build_preprocessor(config: FeatureConfig, frame: ProductFrame) -> tuple[keras.Model, FeatureConfig]:
    """Adapt the preprocessing layers on `frame`; return the preprocessor and the config with vocabulary sizes."""
    inputs = raw_inputs(config)
    data = frame_inputs(frame, config)
    outputs = {}
    fitted = []
    for spec in config.fields:
        if spec.kind == "text":
            outputs[spec.name], size = _text_features(spec, inputs[spec.name], data[spec.name])
        elif spec.kind == "categorical":
            lookup = _adapted(lambda: keras.layers.StringLookup(
                max_tokens=None if spec.max_values is None else spec.max_values + RESERVED_INDICES,
                mask_token="", num_oov_indices=1, name=f"{spec.name}_lookup"),
                data[spec.name], data[spec.name], EMPTY_CATEGORICAL_VOCABULARY)
            outputs[spec.name], size = lookup(inputs[spec.name]), lookup.vocabulary_size()
        else:
            outputs[spec.name], size = _dense_features(spec, inputs, data), None
            outputs[f"{spec.name}_present"] = keras.layers.Identity(name=f"{spec.name}_present_passthrough")(
                inputs[f"{spec.name}_present"])
        fitted.append(dataclasses.replace(spec, vocabulary_size=size))
    return (keras.Model(inputs, outputs, name="preprocessor"),
            dataclasses.replace(config, fields=tuple(fitted)))


def _text_features(spec: FieldSpec, text_input, texts: np.ndarray):
    """Return (symbolic features, vocabulary size) of a text field, after adapting its vectorizer."""
    if spec.representation == "sequence":
        mode, extra = "int", {"output_sequence_length": spec.sequence_length}
    else:
        mode, extra = ("count" if spec.representation == "tfidf" else "multi_hot"), {"sparse": True}
    lowest, highest = spec.ngrams
    # TextVectorization: None = single tokens, an int n = every n-gram from 1 to n, a tuple = exactly those n.
    ngrams = None if highest == 1 else highest if lowest == 1 else tuple(range(lowest, highest + 1))
    vectorizer = _adapted(lambda: keras.layers.TextVectorization(
        max_tokens=spec.max_tokens, output_mode=mode, ngrams=ngrams,
        split="character" if spec.analyzer == "char" else "whitespace",
        # Punctuation is part of character n-grams ("t-shirt"); stripping it costs a regex pass per product.
        standardize="lower" if spec.analyzer == "char" else "lower_and_strip_punctuation",
        name=f"{spec.name}_vectorizer", **extra),
        texts, tf.data.Dataset.from_tensor_slices(texts.astype(str)).batch(PREPROCESS_CHUNK), EMPTY_TEXT_VOCABULARY)
    size = vectorizer.vocabulary_size()
    features = vectorizer(text_input)
    if spec.representation == "tfidf":
        weighting = TfIdfWeighting(size, name=f"{spec.name}_tfidf")
        frequency = np.zeros(size, np.int64)
        for start in range(0, len(texts), PREPROCESS_CHUNK):
            counts = vectorizer(tf.constant(texts[start:start + PREPROCESS_CHUNK].astype(str)))
            frequency += np.bincount(counts.indices[:, 1].numpy(), minlength=size)
        weighting.adapt_counts(frequency, len(texts))
        features = weighting(features)
    return features, size


def _adapted(make_layer, values: np.ndarray, data, empty_vocabulary: list[str]):
    """Return a new lookup layer adapted on `data`, or holding `empty_vocabulary` if the values have no token."""
    layer = make_layer()
    if np.any(values != ""):
        layer.adapt(data)
        if layer.get_vocabulary(include_special_tokens=False):
            return layer
        layer = make_layer()
    layer.set_vocabulary(empty_vocabulary)
    return layer


def _dense_features(spec: FieldSpec, inputs, data):
    if spec.representation == "embedding":
        return keras.layers.Identity(name=f"{spec.name}_passthrough")(inputs[spec.name])
    normalization = keras.layers.Normalization(name=f"{spec.name}_normalization")
    present = data[f"{spec.name}_present"][:, 0] > 0
    normalization.adapt(data[spec.name][present] if present.any() else data[spec.name])
    return normalization(inputs[spec.name])


def _fitted_size(spec: FieldSpec) -> int:
    if spec.vocabulary_size is None:
        raise ValueError(f"field {spec.name!r} has no vocabulary size: build the network from the fitted config")
    return spec.vocabulary_size


class FeatureCache:
    """Preprocessed features of a set of products, kept in memory for the training epochs.

    Sparse rows are stored as ragged (column, value) pairs so shuffled batches can be gathered in tf.data.
    """

    def __init__(self, preprocessor: keras.Model, inputs: dict[str, np.ndarray], *, names: list[str] | None = None):
        chunks: dict[str, list] = {}
        n = len(next(iter(inputs.values())))
        for start in range(0, n, PREPROCESS_CHUNK):
            batch = {name: tf.constant(values[start:start + PREPROCESS_CHUNK].astype(str))
                     if values.dtype == object else tf.constant(values[start:start + PREPROCESS_CHUNK])
                     for name, values in inputs.items()}
            for name, tensor in preprocessor(batch).items():
                if names is None or name in names:
                    chunks.setdefault(name, []).append(tensor)
        self.n = n
        self.dense: dict[str, tf.Tensor] = {}
        self.sparse: dict[str, tuple[tf.RaggedTensor, tf.RaggedTensor, int]] = {}
        for name, parts in chunks.items():
            if isinstance(parts[0], tf.SparseTensor):
                matrix = tf.sparse.reorder(tf.sparse.concat(0, parts))
                rows = matrix.indices[:, 0].numpy()
                splits = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
                self.sparse[name] = (tf.RaggedTensor.from_row_splits(matrix.indices[:, 1], splits),
                                     tf.RaggedTensor.from_row_splits(matrix.values, splits),
                                     int(matrix.dense_shape[1]))
            else:
                self.dense[name] = tf.concat(parts, axis=0)

    def batch(self, indices: tf.Tensor) -> dict[str, tf.Tensor | tf.SparseTensor]:
        """Return the features of the products at `indices` (int64 [b]); sparse rows as SparseTensor [b, V]."""
        batch = {name: tf.gather(values, indices) for name, values in self.dense.items()}
        for name, (columns, values, width) in self.sparse.items():
            columns, values = tf.gather(columns, indices), tf.gather(values, indices)
            coordinates = tf.stack([columns.value_rowids(), columns.flat_values], axis=1)
            batch[name] = tf.SparseTensor(coordinates, values.flat_values,
                                          tf.stack([tf.size(indices, out_type=tf.int64), width]))
        return batch

    def dataset(self, targets: dict[str, np.ndarray], weights: dict[str, np.ndarray], *, batch_size: int,
                shuffle: bool, seed: int | None = None) -> tf.data.Dataset:
        """Return batches of (features, targets, per-output sample weights), reshuffled every epoch if asked."""
        targets = {name: tf.constant(values) for name, values in targets.items()}
        weights = {name: tf.constant(values) for name, values in weights.items()}
        dataset = tf.data.Dataset.range(self.n)
        if shuffle:
            dataset = dataset.shuffle(self.n, seed=seed, reshuffle_each_iteration=True)

        def gather(indices):
            return (self.batch(indices), {name: tf.gather(values, indices) for name, values in targets.items()},
                    {name: tf.gather(values, indices) for name, values in weights.items()})

        return dataset.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)
