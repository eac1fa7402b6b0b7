"""Product frames and the preprocessor (no training)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from classifier.core.config import FeatureConfig, FieldSpec
from classifier.core.features import build_preprocessor, frame_inputs
from classifier.core.frames import ProductFrame


def test_frame_reads_none_as_missing_and_infers_photo_presence():
    frame = ProductFrame(title=["a", None], brand=[None, "x"],
                         image=np.array([[0, 0], [0.6, 0.8]], np.float32))

    assert list(frame.title) == ["a", ""] and list(frame.brand) == ["", "x"] and list(frame.size) == ["", ""]
    np.testing.assert_array_equal(frame.image_present, [0, 1])
    assert list(frame.take([1]).brand) == ["x"]


def test_preprocessor_builds_sparse_l2_normalised_tfidf_rows_and_survives_empty_columns():
    config = FeatureConfig(fields=(
        FieldSpec(name="title", kind="text", representation="tfidf", analyzer="char", ngrams=(2, 3)),
        FieldSpec(name="description", kind="text", representation="tfidf"),
        FieldSpec(name="brand", kind="categorical", representation="onehot"),
    ))
    frame = ProductFrame(title=["T-shirt", "tee shirt", ""])

    preprocessor, fitted = build_preprocessor(config, frame)
    features = preprocessor({name: tf.constant(values.astype(str))
                             for name, values in frame_inputs(frame, fitted).items()})

    title = tf.sparse.to_dense(features["title"]).numpy()
    np.testing.assert_allclose(np.linalg.norm(title, axis=1), [1, 1, 0], atol=1e-6)
    assert fitted.field("title").vocabulary_size == title.shape[1] > 10
    assert fitted.field("description").vocabulary_size == 2  # [UNK] and a placeholder: no description at all
    assert tf.sparse.to_dense(features["description"]).numpy().sum() == 0
    np.testing.assert_array_equal(features["brand"].numpy(), [0, 0, 0])  # missing → the mask index


def test_tfidf_ignores_words_outside_the_vocabulary():
    config = FeatureConfig(fields=(FieldSpec(name="title", kind="text", representation="tfidf"),))
    preprocessor, fitted = build_preprocessor(config, ProductFrame(title=["red shirt", "blue jeans"]))

    features = preprocessor({"title": tf.constant(["red", "red zzz qqq www", "zzz qqq"])})
    rows = tf.sparse.to_dense(features["title"]).numpy()

    # An unseen word neither takes weight from the known ones nor makes a row of its own.
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-6)
    assert rows[0].max() == 1.0 and rows[:, 0].sum() == 0
    assert rows[2].sum() == 0
