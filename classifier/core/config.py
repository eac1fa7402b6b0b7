"""Feature config: how each product field is represented, and the model hyper-parameters.

Read from TOML with `tomllib`; written back by `config_dumps` (a tiny writer for the flat tables used
here), and saved beside every trained model so a reload rebuilds exactly the same inputs.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "default.toml"

FRAME_TEXT_COLUMNS = ("title", "description", "brand", "category", "category_path", "gender", "size")
FRAME_DENSE_COLUMNS = ("image",)

REPRESENTATIONS = {
    "text": ("tfidf", "bow", "sequence"),
    "categorical": ("onehot", "embedding"),
    "dense": ("numeric", "embedding"),
}
ANALYZERS = ("word", "char")
# The options each kind of field reads; `config_dumps` writes only these.
KIND_OPTIONS = {
    "text": ("max_tokens", "ngrams", "analyzer", "sequence_length", "embedding_dim"),
    "categorical": ("max_values", "embedding_dim"),
    "dense": ("dim",),
}


@dataclass(frozen=True)
class FieldSpec:
    """One model input: a product column and how it is represented.

    text: `tfidf` (sparse counts x smoothed IDF, rows L2-normalised, as scikit-learn's TfidfVectorizer),
    `bow` (sparse binary bag of n-grams) or `sequence` (token ids, length `sequence_length`, embedded in
    `embedding_dim`). categorical: `onehot` or `embedding` (`embedding_dim`). dense: `numeric`
    (standardised) or `embedding` (a precomputed vector such as the image CNN embedding, used as is).
    Text is lower-cased; `analyzer = "word"` strips punctuation and splits on whitespace, `"char"` keeps
    every character (n-grams then span words, like scikit-learn's analyzer="char").
    `max_tokens` / `max_values` cap the vocabulary (None: every value seen in training).
    `vocabulary_size` is filled in by fitting (indices including padding/mask and out-of-vocabulary).
    """

    name: str
    kind: str
    representation: str
    column: str = ""
    max_tokens: int | None = None
    max_values: int | None = None
    ngrams: tuple[int, int] = (1, 1)
    analyzer: str = "word"
    sequence_length: int = 32
    embedding_dim: int = 16
    dim: int = 0
    vocabulary_size: int | None = None

    def __post_init__(self):
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if isinstance(self.ngrams, int):
            object.__setattr__(self, "ngrams", (1, self.ngrams))
        object.__setattr__(self, "ngrams", tuple(int(n) for n in self.ngrams))
        if self.kind not in REPRESENTATIONS:
            raise ValueError(f"field {self.name!r}: kind must be one of {sorted(REPRESENTATIONS)}, got {self.kind!r}")
        if self.representation not in REPRESENTATIONS[self.kind]:
            raise ValueError(f"field {self.name!r}: a {self.kind} field's representation must be one of "
                             f"{REPRESENTATIONS[self.kind]}, got {self.representation!r}")
        columns = FRAME_DENSE_COLUMNS if self.kind == "dense" else FRAME_TEXT_COLUMNS
        if self.column not in columns:
            raise ValueError(f"field {self.name!r}: column {self.column!r} is not a {self.kind} column of ProductFrame "
                             f"({', '.join(columns)})")
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"field {self.name!r}: analyzer must be one of {ANALYZERS}, got {self.analyzer!r}")
        if len(self.ngrams) != 2 or not 1 <= self.ngrams[0] <= self.ngrams[1]:
            raise ValueError(f"field {self.name!r}: ngrams must be [lowest, highest] with 1 <= lowest <= highest")
        if self.kind == "dense" and self.dim < 1:
            raise ValueError(f"field {self.name!r}: a dense field needs dim >= 1")


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters shared by the architectures (each reads the ones it uses)."""

    hidden_units: int = 256
    hidden_layers: int = 1
    activation: str = "relu"
    dropout: float = 0.2
    batch_norm: bool = False
    l2: float = 0.0
    encoder_units: int = 128
    conv_filters: int = 64
    conv_widths: tuple[int, ...] = (2, 3, 4)
    rnn_cell: str = "gru"
    rnn_units: int = 64
    bidirectional: bool = True

    def __post_init__(self):
        object.__setattr__(self, "conv_widths", tuple(int(w) for w in self.conv_widths))
        if self.rnn_cell not in ("gru", "lstm"):
            raise ValueError(f"rnn_cell must be 'gru' or 'lstm', got {self.rnn_cell!r}")
        if self.hidden_layers < 1:
            raise ValueError("hidden_layers must be >= 1")


@dataclass(frozen=True)
class FeatureConfig:
    """The model inputs, in order, and the model hyper-parameters."""

    fields: tuple[FieldSpec, ...]
    model: ModelParams = field(default_factory=ModelParams)

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [spec.name for spec in self.fields]
        if not names:
            raise ValueError("a feature config needs at least one field")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        clashes = {f"{spec.name}_present" for spec in self.fields if spec.kind == "dense"} & set(names)
        if clashes:
            raise ValueError(f"field names {sorted(clashes)} clash with dense presence inputs")

    def field(self, name: str) -> FieldSpec:
        """Return the spec of the field called `name`."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def of_kind(self, kind: str, representation: str | None = None) -> tuple[FieldSpec, ...]:
        """Return the fields of one kind (and representation), in config order."""
        return tuple(spec for spec in self.fields
                     if spec.kind == kind and representation in (None, spec.representation))

    def with_fields(self, names: Iterable[str] | None = None, **changes: Any) -> "FeatureConfig":
        """Return a copy with `changes` applied to the named fields (all fields when `names` is None)."""
        selected = set(names) if names is not None else {spec.name for spec in self.fields}
        unknown = selected - {spec.name for spec in self.fields}
        if unknown:
            raise KeyError(f"no fields {sorted(unknown)}")
        return dataclasses.replace(self, fields=tuple(
            dataclasses.replace(spec, **changes) if spec.name in selected else spec for spec in self.fields))

    def without_fields(self, names: Iterable[str]) -> "FeatureConfig":
        """Return a copy without the named fields."""
        dropped = set(names)
        return dataclasses.replace(self, fields=tuple(spec for spec in self.fields if spec.name not in dropped))

    def with_model(self, **changes: Any) -> "FeatureConfig":
        """Return a copy with `changes` applied to the model hyper-parameters."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))


def config_from_dict(data: dict[str, Any]) -> FeatureConfig:
    """Build a FeatureConfig from the parsed TOML tables `fields.<name>` and `model`."""
    unknown = set(data) - {"fields", "model"}
    if unknown:
        raise ValueError(f"unknown config tables {sorted(unknown)}")
    field_names = {f.name for f in dataclasses.fields(FieldSpec)} - {"name"}
    specs = []
    for name, options in data.get("fields", {}).items():
        bad = set(options) - field_names
        if bad:
            raise ValueError(f"field {name!r}: unknown options {sorted(bad)}")
        specs.append(FieldSpec(name=name, **options))
    model_options = data.get("model", {})
    bad = set(model_options) - {f.name for f in dataclasses.fields(ModelParams)}
    if bad:
        raise ValueError(f"[model]: unknown options {sorted(bad)}")
    return FeatureConfig(fields=tuple(specs), model=ModelParams(**model_options))


def config_to_dict(config: FeatureConfig) -> dict[str, Any]:
    """Return the config as TOML-ready tables, leaving out unset (None) values."""
    fields = {}
    for spec in config.fields:
        values = dataclasses.asdict(spec)
        keys = ["kind", "representation", "column", *KIND_OPTIONS[spec.kind], "vocabulary_size"]
        fields[spec.name] = {key: values[key] for key in keys if values[key] is not None
                             and not (key == "column" and values[key] == spec.name)}
    return {"fields": fields, "model": dataclasses.asdict(config.model)}


def config_loads(text: str) -> FeatureConfig:
    """Parse a FeatureConfig from TOML text."""
    return config_from_dict(tomllib.loads(text))


def config_load(path: str | Path = DEFAULT_CONFIG_PATH) -> FeatureConfig:
    """Read a FeatureConfig from a TOML file (the seed system's config by default)."""
    return config_loads(Path(path).read_text(encoding="utf-8"))


def config_dumps(config: FeatureConfig) -> str:
    """Write the config as TOML that `config_loads` reads back to an equal config."""
    data = config_to_dict(config)
    lines: list[str] = []
    for name, options in data["fields"].items():
        lines.append(f"[fields.{_toml_key(name)}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in options.items())
        lines.append("")
    lines.append("[model]")
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in data["model"].items())
    return "\n".join(lines) + "\n"


def config_save(config: FeatureConfig, path: str | Path) -> None:
    """Write the config to a TOML file."""
    Path(path).write_text(config_dumps(config), encoding="utf-8")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
