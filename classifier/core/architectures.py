"""Model builders: plain functions `build_<name>(config, *, heads) -> keras.Model`, registered in ARCHITECTURES.

Each takes a fitted FeatureConfig (vocabulary sizes known) and `heads`, the objectives and their class
counts ({"exclusive": C, "rule": R}), and returns the trainable network from preprocessed features to one
probability output per head. The layer named "trunk" (all but logreg: the last hidden layer) is the
product embedding (`embedding_output`).
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from classifier.core.config import FeatureConfig
from classifier.core.encoders import (
    HEAD_ACTIVATIONS,
    head_outputs,
    hidden_stack,
    modality_encodings,
    raw_encodings,
    wide_logits,
)
from classifier.core.features import feature_inputs


def build_logreg(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a linear model (multinomial / per-class logistic regression) on the sparse inputs and vectors."""
    inputs = feature_inputs(config)
    logits = wide_logits(inputs, config, heads=heads, include_dense=True)
    outputs = {head: layers.Activation(HEAD_ACTIVATIONS[head], name=head)(
        layers.Identity(name=f"{head}_logits")(logits[head])) for head in heads}
    return keras.Model(inputs, outputs, name="logreg_network")


def build_dnn(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a feed-forward network of homogeneous hidden layers on the concatenated field encodings."""
    inputs = feature_inputs(config)
    trunk = hidden_stack(raw_encodings(inputs, config), config.model)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model), name="dnn_network")


def build_wide_deep(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build wide & deep: a linear part on the sparse inputs plus the dnn, their logits summed, trained jointly."""
    inputs = feature_inputs(config)
    trunk = hidden_stack(raw_encodings(inputs, config), config.model)
    wide = wide_logits(inputs, config, heads=heads)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model, wide=wide), name="wide_deep_network")


def build_cnn(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a text CNN: convolutions of several widths with max-over-time pooling on each sequence field."""
    _require_sequence_text(config, "cnn")
    inputs = feature_inputs(config)
    trunk = hidden_stack(modality_encodings(inputs, config, text_encoder="cnn"), config.model)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model), name="cnn_network")


def build_rnn(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a text RNN: a GRU or LSTM (bidirectional per config) over each sequence field."""
    _require_sequence_text(config, "rnn")
    inputs = feature_inputs(config)
    trunk = hidden_stack(modality_encodings(inputs, config, text_encoder="rnn"), config.model)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model), name="rnn_network")


def build_image(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a head on the dense (image CNN) embeddings only; products without a photo get the prior."""
    if not config.of_kind("dense"):
        raise ValueError("the image architecture needs a dense field (the image embedding)")
    inputs = {name: tensor for name, tensor in feature_inputs(config).items()
              if name in {spec.name for spec in config.of_kind("dense")}
              or name in {f"{spec.name}_present" for spec in config.of_kind("dense")}}
    trunk = hidden_stack(raw_encodings(inputs, config, kinds=("dense",)), config.model)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model), name="image_network")


def build_multimodal(config: FeatureConfig, *, heads: dict[str, int]) -> keras.Model:
    """Build a trunk on the concatenated per-input encoders: text, categorical embeddings, gated image."""
    inputs = feature_inputs(config)
    trunk = hidden_stack(modality_encodings(inputs, config, text_encoder="mean"), config.model)
    return keras.Model(inputs, head_outputs(trunk, heads, config.model), name="multimodal_network")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "logreg": build_logreg,
    "dnn": build_dnn,
    "wide_deep": build_wide_deep,
    "cnn": build_cnn,
    "rnn": build_rnn,
    "image": build_image,
    "multimodal": build_multimodal,
}


def build_network(config: FeatureConfig, *, architecture: str, heads: dict[str, int]) -> keras.Model:
    """Build the registered architecture `architecture`."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    unknown = set(heads) - set(HEAD_ACTIVATIONS)
    if unknown or not heads:
        raise ValueError(f"heads must be a non-empty subset of {sorted(HEAD_ACTIVATIONS)}, got {sorted(heads)}")
    return ARCHITECTURES[architecture](config, heads=heads)


def embedding_output(network: keras.Model):
    """Return the symbolic product embedding [batch, d] of a built network: its "trunk" layer's output.

    A linear model has no hidden layer; its embedding is its logits, all heads concatenated.
    """
    names = {layer.name for layer in network.layers}
    if "trunk" in names:
        return network.get_layer("trunk").output
    logits = [network.get_layer(f"{head}_logits").output for head in HEAD_ACTIVATIONS if f"{head}_logits" in names]
    return logits[0] if len(logits) == 1 else layers.Concatenate(name="embedding")(logits)


def _require_sequence_text(config: FeatureConfig, architecture: str) -> None:
    if not config.of_kind("text", "sequence"):
        raise ValueError(f"the {architecture} architecture needs a text field with representation = \"sequence\" "
                         f"(e.g. config.with_fields(['title'], representation='sequence'))")


def config_for_architecture(config: FeatureConfig, architecture: str, *, sequence_length: int = 24,
                            embedding_dim: int = 64) -> FeatureConfig:
    """Return the config an architecture can train on, derived from a general one.

    The text CNN / RNN read token sequences, so the title becomes a word sequence (its vocabulary cap kept);
    the image head reads the dense inputs only. Other architectures take the config as it is.
    """
    if architecture in ("cnn", "rnn") and not config.of_kind("text", "sequence"):
        if "title" not in {spec.name for spec in config.fields}:
            raise ValueError(f"the {architecture} architecture needs a title field to read as a sequence")
        return config.with_fields(["title"], representation="sequence", ngrams=(1, 1), analyzer="word",
                                  sequence_length=sequence_length, embedding_dim=embedding_dim)
    if architecture == "image":
        dense = [spec for spec in config.fields if spec.kind == "dense"]
        if not dense:
            raise ValueError("the image architecture needs a dense (image embedding) field")
        return config.without_fields([spec.name for spec in config.fields if spec.kind != "dense"])
    return config
