"""ProductClassifier: the scikit-learn estimator contract around a Keras product model."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from classifier.core.architectures import build_network, embedding_output
from classifier.core.calibration import temperature_apply, temperature_fit
from classifier.core.config import FeatureConfig, config_load, config_save
from classifier.core.features import FeatureCache, build_preprocessor, frame_inputs, raw_inputs
from classifier.core.frames import ProductFrame, Targets
from classifier.core.names import OBJECTIVES

FORMAT_VERSION = 1
MODEL_FILE, CONFIG_FILE, META_FILE = "model.keras", "feature_config.toml", "classifier.json"


@keras.saving.register_keras_serializable(package="classifier_core")
class ObservationLikelihoodLoss(keras.losses.Loss):
    """−log Σ_c t_c p_c: the negative log-probability the model gives to a weak observation t [batch, C].

    With t the indicator of the categories weak evidence names (scaled to sum 1), this is the partial-label
    loss (Jin & Ghahramani, 2002; Cour et al., 2011): the model may put the mass on any named category and
    settles on the one the other products support; with t = P(evidence | class) (up to a constant) it is the
    forward loss correction of Patrini et al. (2017). On a one-hot t it equals the cross-entropy.
    """

    def __init__(self, reduction="mean_with_sample_weight", name="observation_likelihood", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def call(self, y_true, y_pred):
        likelihood = keras.ops.sum(keras.ops.cast(y_true, y_pred.dtype) * y_pred, axis=-1)
        return -keras.ops.log(keras.ops.clip(likelihood, keras.backend.epsilon(), 1.0))


EXCLUSIVE_LOSSES: dict[str, Callable[[], keras.losses.Loss]] = {
    "cross_entropy": lambda: keras.losses.CategoricalCrossentropy(reduction="mean_with_sample_weight"),
    "observation_likelihood": lambda: ObservationLikelihoodLoss(),
}
"""The exclusive head's losses on target distributions t [n, C]: cross_entropy −Σ t log p fits the distribution;
observation_likelihood −log Σ t p (see ObservationLikelihoodLoss) lets the model choose within it."""


def objective_losses(objectives: Sequence[str], *, exclusive_loss: str | None = None) -> dict[str, keras.losses.Loss]:
    """Return each objective's loss, averaged over the products that have a target (sample weight 1).

    exclusive: categorical cross-entropy on class indices, or with `exclusive_loss` (a name in EXCLUSIVE_LOSSES)
    that loss on target distributions [n, C]; rule: binary cross-entropy averaged over the rule classes.
    "mean_with_sample_weight" divides by the batch's known products, not its size, so the heads keep their
    relative weight however sparse the labels are.
    """
    if exclusive_loss is not None and exclusive_loss not in EXCLUSIVE_LOSSES:
        raise ValueError(f"unknown exclusive loss {exclusive_loss!r}; choose one of {sorted(EXCLUSIVE_LOSSES)}")
    losses = {
        "exclusive": (EXCLUSIVE_LOSSES[exclusive_loss] if exclusive_loss is not None else
                      lambda: keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")),
        "rule": lambda: keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight"),
    }
    return {objective: losses[objective]() for objective in objectives}


def masked_targets(y: Targets, objectives: Sequence[str], *, dense: bool = False,
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return per objective the Keras targets and sample weights float32 [n]: 0 where a product has no target,
    else the target's weight (exclusive: `y.exclusive_weight`; rule: 1).

    exclusive targets int32 [n] (unknown rows get class 0, weighted 0), or with `dense` float32 [n, C]
    distributions (one-hot for a class, the `exclusive_soft` row otherwise, zeros when unknown); rule targets
    float32 [n, R] (rows the rules never saw are zeroed, weighted 0, so even NaN there cannot leak into the loss).
    """
    targets, weights = {}, {}
    if "exclusive" in objectives:
        known = y.exclusive_known
        targets["exclusive"] = (y.exclusive_distribution() if dense
                                else np.where(known, y.exclusive, 0).astype(np.int32))
        weights["exclusive"] = (known * y.exclusive_weight).astype(np.float32)
    if "rule" in objectives:
        targets["rule"] = np.where(y.rule_known[:, None], np.nan_to_num(y.rule), 0).astype(np.float32)
        weights["rule"] = y.rule_known.astype(np.float32)
    return targets, weights


class ProductClassifier:
    """Categorise products from raw fields with a Keras model; one softmax and/or sigmoid head per objective.

    `exclusive_loss` (a name in EXCLUSIVE_LOSSES) trains the exclusive head on target distributions: needed when
    targets carry `exclusive_soft` rows (None then means "cross_entropy"); None otherwise keeps the sparse
    cross-entropy on class indices. With `warm_start`, `fit` on a fitted (or loaded) classifier continues from its
    weights and keeps its vocabularies (scikit-learn's warm_start): a second stage, e.g. fine-tuning on human labels
    after learning from weak targets; the classes must not change. Parameters are stored as given and validated
    in `fit`. Fitted attributes: `model_` (end-to-end Keras
    model on raw inputs), `config_` (the config with fitted vocabulary sizes), `classes_`, `rule_classes_`,
    `history_` (per-epoch losses), `temperature_` (the exclusive head's calibration, 1.0 until `calibrate`).
    """

    prediction_batch_size = 2048

    def __init__(self, *, config: FeatureConfig, architecture: str = "wide_deep",
                 objectives: Sequence[str] = ("exclusive",), epochs: int = 10, batch_size: int = 256,
                 learning_rate: float = 1e-3, loss_weights: dict[str, float] | None = None,
                 validation_fraction: float = 0.1, patience: int = 2, random_state: int | None = None,
                 exclusive_loss: str | None = None, warm_start: bool = False):
        self.config = config
        self.architecture = architecture
        self.objectives = objectives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss_weights = loss_weights
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.exclusive_loss = exclusive_loss
        self.warm_start = warm_start

    def get_params(self, deep: bool = True) -> dict:
        """Return the constructor parameters."""
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters
                if name != "self"}

    def set_params(self, **params) -> "ProductClassifier":
        """Set constructor parameters; return self."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r}")
            setattr(self, name, value)
        return self

    def fit(self, X: ProductFrame, y: Targets, *,  # long: one Keras fit, its checks and callbacks in order
            validation_data: tuple[ProductFrame, Targets] | None = None,
            progress: Callable[[int, dict], None] | None = None) -> "ProductClassifier":
        """Train on products X and their targets y; `progress(epoch, logs)` is called after each (0-based) epoch.

        Early stopping watches `validation_data` when given, else a `validation_fraction` slice of X.
        """
        objectives = self._checked_objectives(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} products, y has {len(y)}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        rng = np.random.default_rng(self.random_state)
        if self.random_state is not None:
            keras.utils.set_random_seed(self.random_state)

        order = rng.permutation(len(X))
        n_validation = 0 if validation_data is not None else int(round(len(X) * self.validation_fraction))
        validation, train = order[:n_validation], order[n_validation:]
        X_train, y_train = X.take(train), y.take(train)
        if validation_data is None and n_validation:
            validation_data = (X.take(validation), y.take(validation))
        if validation_data is not None and not len(validation_data[0]):
            validation_data = None

        if self.warm_start and hasattr(self, "model_"):
            preprocessor, network, fitted_config = self._warm_parts(y, objectives)
        else:
            preprocessor, fitted_config = build_preprocessor(self.config, X_train)
            heads = {"exclusive": len(y.classes), "rule": len(y.rule_classes)}
            heads = {objective: heads[objective] for objective in objectives}
            network = build_network(fitted_config, architecture=self.architecture, heads=heads)
        loss_weights = {objective: float((self.loss_weights or {}).get(objective, 1.0)) for objective in objectives}
        exclusive_loss = self._exclusive_loss(y)
        # No XLA: it does not take the sparse TF-IDF inputs, and compiling costs more than it saves on small CPUs.
        network.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                        loss=objective_losses(objectives, exclusive_loss=exclusive_loss), loss_weights=loss_weights,
                        jit_compile=False)

        dense = exclusive_loss is not None
        train_data = self._dataset(preprocessor, network, fitted_config, X_train, y_train, objectives,
                                   dense=dense, shuffle=True, seed=int(rng.integers(2**31)))
        callbacks = []
        if validation_data is not None:
            validation_data = self._dataset(preprocessor, network, fitted_config, *validation_data, objectives,
                                            dense=dense, shuffle=False)
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                                           restore_best_weights=True))
        if progress is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(epoch, dict(logs or {}))))
        history = network.fit(train_data, validation_data=validation_data, epochs=self.epochs,
                              callbacks=callbacks, shuffle=False, verbose=0)

        self.model_ = _end_to_end_model(preprocessor, network, fitted_config)
        self.config_ = fitted_config
        self.classes_ = np.asarray(y.classes if "exclusive" in objectives else (), dtype=object)
        self.rule_classes_ = np.asarray(y.rule_classes if "rule" in objectives else (), dtype=object)
        self.history_ = {name: [float(value) for value in values] for name, values in history.history.items()}
        self.temperature_ = 1.0
        self._embedding_model = None
        return self

    def calibrate(self, X: ProductFrame, y: Targets, *, weights: np.ndarray | None = None) -> "ProductClassifier":
        """Fit the exclusive head's temperature on held-out products X with exclusive targets y (weights [n]).

        Products without an exclusive target (-1) are ignored; with none left the temperature stays 1.0.
        """
        known = np.asarray(y.exclusive) >= 0
        self.temperature_ = 1.0
        if known.any() and len(self.classes_):
            position = {str(c): i for i, c in enumerate(self.classes_)}
            truth = np.array([position.get(str(y.classes[t]), -1) for t in np.asarray(y.exclusive)[known]])
            seen = truth >= 0  # a class the model never trained on cannot be calibrated for
            if seen.any():
                proba = self.predict_proba(X.take(np.flatnonzero(known)))["exclusive"]
                w = None if weights is None else np.asarray(weights)[known][seen]
                self.temperature_ = temperature_fit(proba[seen], truth[seen], weights=w)
        return self

    def predict_proba(self, X: ProductFrame, *, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Return per objective the probabilities: "exclusive" float32 [n, C] (rows sum to 1), "rule" [n, R]."""
        model = self._fitted_model()
        heads = {name: int(tensor.shape[-1]) for name, tensor in model.output.items()}
        if len(X) == 0:
            return {head: np.zeros((0, width), np.float32) for head, width in heads.items()}
        proba = _predict_in_batches(model, frame_inputs(X, self.config_), batch_size or self.prediction_batch_size)
        temperature = getattr(self, "temperature_", 1.0)
        if "exclusive" in proba and temperature != 1.0:
            proba["exclusive"] = temperature_apply(proba["exclusive"], temperature)
        return proba

    def predict(self, X: ProductFrame) -> np.ndarray:
        """Return the most probable exclusive class of each product, object [n]."""
        if len(self.classes_) == 0:
            raise ValueError("this classifier has no exclusive head")
        return self.classes_[self.predict_proba(X)["exclusive"].argmax(axis=1)]

    def embed(self, X: ProductFrame, *, batch_size: int | None = None) -> np.ndarray:
        """Return the product embeddings float32 [n, d]: the trunk's last hidden layer."""
        model = self._fitted_model()
        if self._embedding_model is None:
            network = model.get_layer(f"{self.architecture}_network")
            trunk = keras.Model(network.input, embedding_output(network), name="trunk_model")
            inputs = raw_inputs(self.config_)
            features = model.get_layer("preprocessor")(inputs)
            self._embedding_model = keras.Model(
                inputs, trunk({name: features[name] for name in _input_names(network)}), name="embedder")
        if len(X) == 0:
            return np.zeros((0, int(self._embedding_model.output.shape[-1])), np.float32)
        return _predict_in_batches(self._embedding_model, frame_inputs(X, self.config_),
                                   batch_size or self.prediction_batch_size)

    def save(self, directory: str | Path) -> None:
        """Write the Keras model, the fitted feature config and the class lists to `directory`."""
        model = self._fitted_model()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model.save(directory / MODEL_FILE)
        config_save(self.config_, directory / CONFIG_FILE)
        params = {name: value for name, value in self.get_params().items() if name != "config"}
        params["objectives"] = list(params["objectives"])
        meta = {"format_version": FORMAT_VERSION, "keras_version": keras.__version__, "params": params,
                "classes": [str(c) for c in self.classes_], "rule_classes": [str(c) for c in self.rule_classes_],
                "temperature": float(getattr(self, "temperature_", 1.0))}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "ProductClassifier":
        """Read a classifier written by `save`; it predicts exactly as the saved one on raw input."""
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported classifier format {meta.get('format_version')!r}")
        config = config_load(directory / CONFIG_FILE)
        params = dict(meta["params"], objectives=tuple(meta["params"]["objectives"]))
        classifier = cls(config=config, **params)
        classifier.model_ = keras.saving.load_model(directory / MODEL_FILE, compile=False)
        classifier.config_ = config
        classifier.classes_ = np.asarray(meta["classes"], dtype=object)
        classifier.rule_classes_ = np.asarray(meta["rule_classes"], dtype=object)
        classifier.history_ = None
        classifier.temperature_ = float(meta.get("temperature", 1.0))
        classifier._embedding_model = None
        return classifier

    def _checked_objectives(self, y: Targets) -> tuple[str, ...]:
        objectives = tuple(self.objectives)
        if not objectives or set(objectives) - set(OBJECTIVES) or len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives must be distinct names among {OBJECTIVES}, got {objectives}")
        if "exclusive" in objectives and (y.exclusive is None or not y.classes):
            raise ValueError("the exclusive objective needs y.exclusive and y.classes")
        if "rule" in objectives and (y.rule is None or not y.rule_classes):
            raise ValueError("the rule objective needs y.rule and y.rule_classes")
        return objectives

    def _warm_parts(self, y: Targets, objectives: tuple[str, ...]) -> tuple[keras.Model, keras.Model, FeatureConfig]:
        """Return the fitted preprocessor, network and config to continue from; the heads must be the same."""
        heads = tuple(self.model_.output)
        if set(heads) != set(objectives):
            raise ValueError(f"warm start: the classifier has heads {sorted(heads)}, the targets {sorted(objectives)}")
        if "exclusive" in objectives and tuple(y.classes) != tuple(str(c) for c in self.classes_):
            raise ValueError("warm start: the exclusive classes differ from the fitted ones")
        if "rule" in objectives and tuple(y.rule_classes) != tuple(str(c) for c in self.rule_classes_):
            raise ValueError("warm start: the rule classes differ from the fitted ones")
        return (self.model_.get_layer("preprocessor"), self.model_.get_layer(f"{self.architecture}_network"),
                self.config_)

    def _exclusive_loss(self, y: Targets) -> str | None:
        """Return the exclusive head's loss on distributions, or None for the sparse cross-entropy on indices."""
        if self.exclusive_loss is not None and self.exclusive_loss not in EXCLUSIVE_LOSSES:
            raise ValueError(f"unknown exclusive loss {self.exclusive_loss!r}; "
                             f"choose one of {sorted(EXCLUSIVE_LOSSES)}")
        if self.exclusive_loss is None and "exclusive" in self.objectives and y.exclusive_soft is not None:
            return "cross_entropy"
        return self.exclusive_loss if "exclusive" in self.objectives else None

    def _dataset(self, preprocessor, network, config, X, y, objectives, *, dense, shuffle, seed=None):
        inputs = frame_inputs(X, config)
        cache = FeatureCache(preprocessor, inputs, names=_input_names(network))
        targets, weights = masked_targets(y, objectives, dense=dense)
        return cache.dataset(targets, weights, batch_size=self.batch_size, shuffle=shuffle, seed=seed)

    def _fitted_model(self) -> keras.Model:
        if not hasattr(self, "model_"):
            raise AttributeError("this ProductClassifier is not fitted yet: call fit() or load()")
        return self.model_


def _predict_in_batches(model: keras.Model, inputs: dict[str, np.ndarray], batch_size: int):
    """Return the model's outputs on `inputs`, run eagerly batch by batch, as NumPy (a dict if the model's is).

    Eager calls skip the graph tracing of `model.predict` (a second or more per model and input shape);
    with batches of thousands of products the per-op dispatch cost is negligible.
    """
    n = len(next(iter(inputs.values())))
    parts = []
    for start in range(0, n, batch_size):
        batch = {name: tf.constant(values[start:start + batch_size].astype(str)) if values.dtype == object
                 else tf.constant(values[start:start + batch_size]) for name, values in inputs.items()}
        parts.append(model(batch, training=False))
    if isinstance(parts[0], dict):
        return {head: np.concatenate([np.asarray(part[head]) for part in parts]) for head in parts[0]}
    return np.concatenate([np.asarray(part) for part in parts])


def _input_names(network: keras.Model) -> list[str]:
    return list(network.input)


def _end_to_end_model(preprocessor: keras.Model, network: keras.Model, config: FeatureConfig) -> keras.Model:
    """Return the serving model raw fields → probabilities: the preprocessor then the network."""
    inputs = raw_inputs(config)
    features = preprocessor(inputs)
    outputs = network({name: features[name] for name in _input_names(network)})
    return keras.Model(inputs, outputs, name="product_classifier")
