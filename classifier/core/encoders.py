"""Encoders shared by the model builders: per-field encodings, the hidden stack, the wide part, the heads.

Every layer is named after its field (`title_encoder`, `brand_embedding`, ...), so a saved model reads as
its config. Inputs are the preprocessor's features (see `classifier.core.features.feature_inputs`).
"""

from __future__ import annotations

import keras
from keras import layers

from classifier.core.config import FeatureConfig, FieldSpec, ModelParams

# The objectives and how their heads turn logits into probabilities.
HEAD_ACTIVATIONS = {"exclusive": "softmax", "rule": "sigmoid"}


def _l2(params: ModelParams):
    return keras.regularizers.L2(params.l2) if params.l2 else None


def token_embedding(ids, spec: FieldSpec, *, mask_zero: bool):
    """Embed token ids int [batch, length] as float [batch, length, embedding_dim]."""
    return layers.Embedding(spec.vocabulary_size, spec.embedding_dim, mask_zero=mask_zero,
                            name=f"{spec.name}_embedding")(ids)


def text_mean_encoder(ids, spec: FieldSpec, params: ModelParams):
    """Encode token ids [batch, length] as their mean embedding [batch, embedding_dim] over all positions.

    Padding has its own (learned) embedding rather than a mask: a masked mean of an empty text is 0/0.
    """
    return layers.GlobalAveragePooling1D(name=f"{spec.name}_mean")(token_embedding(ids, spec, mask_zero=False))


def text_cnn_encoder(ids, spec: FieldSpec, params: ModelParams):
    """Encode token ids [batch, length] by 1D convolutions of several widths, max over time: [batch, filters * widths]."""
    if spec.sequence_length < max(params.conv_widths):
        raise ValueError(f"field {spec.name!r}: sequence_length {spec.sequence_length} is shorter than the widest "
                         f"convolution ({max(params.conv_widths)})")
    embedded = token_embedding(ids, spec, mask_zero=False)
    pooled = [
        layers.GlobalMaxPooling1D(name=f"{spec.name}_maxpool{width}")(
            layers.Conv1D(params.conv_filters, width, activation=params.activation, kernel_regularizer=_l2(params),
                          name=f"{spec.name}_conv{width}")(embedded))
        for width in params.conv_widths
    ]
    return pooled[0] if len(pooled) == 1 else layers.Concatenate(name=f"{spec.name}_cnn")(pooled)


def text_rnn_encoder(ids, spec: FieldSpec, params: ModelParams):
    """Encode token ids [batch, length] by a GRU or LSTM (optionally bidirectional): [batch, units (x2)]."""
    cell_class = layers.GRU if params.rnn_cell == "gru" else layers.LSTM
    embedded = token_embedding(ids, spec, mask_zero=True)
    if params.bidirectional:
        return layers.Bidirectional(cell_class(params.rnn_units, name=f"{spec.name}_{params.rnn_cell}"),
                                    name=f"{spec.name}_bi{params.rnn_cell}")(embedded)
    return cell_class(params.rnn_units, name=f"{spec.name}_{params.rnn_cell}")(embedded)


TEXT_ENCODERS = {"mean": text_mean_encoder, "cnn": text_cnn_encoder, "rnn": text_rnn_encoder}


def categorical_encoding(ids, spec: FieldSpec):
    """Encode lookup indices int [batch] as an embedding [batch, embedding_dim] or one-hot [batch, vocabulary]."""
    if spec.representation == "embedding":
        return layers.Embedding(spec.vocabulary_size, spec.embedding_dim, name=f"{spec.name}_embedding")(ids)
    return layers.CategoryEncoding(spec.vocabulary_size, output_mode="one_hot", name=f"{spec.name}_onehot")(ids)


def present_vector(inputs, spec: FieldSpec):
    """Return the dense field [batch, dim] zeroed where its presence flag [batch, 1] is 0."""
    return layers.Multiply(name=f"{spec.name}_masked")([inputs[spec.name], inputs[f"{spec.name}_present"]])


def raw_encodings(inputs, config: FeatureConfig, *, kinds=("text", "categorical", "dense")) -> dict:
    """Return each field's encoding for a model on the concatenated inputs.

    text: the sparse TF-IDF / bag-of-words row, or mean token embedding; categorical: embedding or one-hot;
    dense: the vector (zeros when absent) and its 0/1 presence flag.
    """
    encodings = {}
    for spec in config.fields:
        if spec.kind not in kinds:
            continue
        if spec.kind == "text":
            encodings[spec.name] = (text_mean_encoder(inputs[spec.name], spec, config.model)
                                    if spec.representation == "sequence" else inputs[spec.name])
        elif spec.kind == "categorical":
            encodings[spec.name] = categorical_encoding(inputs[spec.name], spec)
        else:
            encodings[spec.name] = present_vector(inputs, spec)
            encodings[f"{spec.name}_present"] = inputs[f"{spec.name}_present"]
    return encodings


def modality_encodings(inputs, config: FeatureConfig, *, text_encoder: str = "mean") -> dict:
    """Return one encoder output per field, for a trunk that concatenates them.

    text: a dense encoder over the sparse row, or `text_encoder` ("mean", "cnn", "rnn") over token ids;
    categorical: embedding or one-hot; dense: a dense encoder gated by presence, plus the presence flag.
    """
    params = config.model
    encodings = {}
    for spec in config.fields:
        x = inputs[spec.name]
        if spec.kind == "text" and spec.representation == "sequence":
            encodings[spec.name] = TEXT_ENCODERS[text_encoder](x, spec, params)
        elif spec.kind == "text":
            encodings[spec.name] = layers.Dense(params.encoder_units, activation=params.activation,
                                                kernel_regularizer=_l2(params), name=f"{spec.name}_encoder")(x)
        elif spec.kind == "categorical":
            encodings[spec.name] = categorical_encoding(x, spec)
        else:
            encoded = layers.Dense(params.encoder_units, activation=params.activation,
                                   kernel_regularizer=_l2(params), name=f"{spec.name}_encoder")(x)
            present = inputs[f"{spec.name}_present"]
            encodings[spec.name] = layers.Multiply(name=f"{spec.name}_gate")([encoded, present])
            encodings[f"{spec.name}_present"] = present
    return encodings


def hidden_stack(encodings: dict, params: ModelParams):
    """Return the trunk [batch, hidden_units]: homogeneous Dense → [BatchNorm] → activation → [Dropout] layers.

    The first layer is a Dense over the concatenation of `encodings`, computed as one Dense per encoding
    summed (the same function), so sparse TF-IDF rows never have to be densified. The last activation
    is the layer named "trunk" (the product embedding).
    """
    x = None
    for index in range(1, params.hidden_layers + 1):
        name = f"hidden{index}"
        if index == 1:
            parts = [layers.Dense(params.hidden_units, use_bias=position == 0, kernel_regularizer=_l2(params),
                                  name=f"{name}_{field}")(encoding)
                     for position, (field, encoding) in enumerate(encodings.items())]
            x = parts[0] if len(parts) == 1 else layers.Add(name=f"{name}_sum")(parts)
        else:
            x = layers.Dense(params.hidden_units, kernel_regularizer=_l2(params), name=name)(x)
        if params.batch_norm:
            x = layers.BatchNormalization(name=f"{name}_batch_norm")(x)
        x = layers.Activation(params.activation,
                              name="trunk" if index == params.hidden_layers else f"{name}_activation")(x)
        if params.dropout:
            x = layers.Dropout(params.dropout, name=f"{name}_dropout")(x)
    return x


def wide_logits(inputs, config: FeatureConfig, *, heads: dict[str, int], include_dense: bool = False) -> dict:
    """Return per head the logits [batch, n_classes] of a linear model on the sparse inputs.

    Text rows (TF-IDF, bag of words, or bag of token ids) and one-hot categoricals; an embedding of width
    n_classes is exactly the linear term of a one-hot input, at the cost of a lookup (and, as every
    product has one index per categorical field, it also carries the bias). With `include_dense`, the
    dense vectors (zeros when absent) and their presence flags as well.
    """
    if not config.of_kind("text") and not config.of_kind("categorical"):
        raise ValueError("a linear part needs at least one text or categorical field")
    dense = {}
    if include_dense:
        for spec in config.of_kind("dense"):
            dense[spec.name] = present_vector(inputs, spec)
            dense[f"{spec.name}_present"] = inputs[f"{spec.name}_present"]
    logits = {}
    for head, n_classes in heads.items():
        terms = []
        for spec in config.fields:
            x, name = inputs[spec.name], f"{head}_wide_{spec.name}"
            if spec.kind == "text" and spec.representation == "sequence":
                weights = layers.Embedding(spec.vocabulary_size, n_classes, name=name)(x)  # no mask: see mean encoder
                terms.append(layers.GlobalAveragePooling1D(name=f"{name}_mean")(weights))
            elif spec.kind == "text":
                terms.append(layers.Dense(n_classes, use_bias=not terms, name=name)(x))
            elif spec.kind == "categorical":
                terms.append(layers.Embedding(spec.vocabulary_size, n_classes, name=name)(x))
        for field, x in dense.items():
            terms.append(layers.Dense(n_classes, use_bias=False, name=f"{head}_wide_{field}")(x))
        logits[head] = terms[0] if len(terms) == 1 else layers.Add(name=f"{head}_wide_logits")(terms)
    return logits


def head_outputs(trunk, heads: dict[str, int], params: ModelParams, *, wide: dict | None = None) -> dict:
    """Return per head its probabilities: softmax for "exclusive", sigmoid for "rule" (layers named by head)."""
    outputs = {}
    for head, n_classes in heads.items():
        logits = layers.Dense(n_classes, kernel_regularizer=_l2(params), name=f"{head}_logits")(trunk)
        if wide is not None:
            logits = layers.Add(name=f"{head}_wide_deep_logits")([logits, wide[head]])
        outputs[head] = layers.Activation(HEAD_ACTIVATIONS[head], name=head)(logits)
    return outputs
