"""Import mappings: which input field feeds which product field, from a TOML file or the defaults."""

from __future__ import annotations

import codecs
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRODUCT_FIELDS = ("external_id", "title", "description", "brand", "gender", "size", "price", "currency", "image")

DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "external_id": ("id", "sku", "product_id", "productid", "item_id", "offer_id", "external_id"),
    "title": ("title", "name", "product_name", "productdisplayname"),
    "description": ("description", "long_description", "short_description"),
    "brand": ("brand", "manufacturer"),
    "gender": ("gender",),
    "size": ("size",),
    "price": ("price", "sale_price", "current_price"),
    "currency": ("currency", "currency_code"),
    "image": ("image", "image_url", "image_link", "imageurl", "image_path"),
}
DEFAULT_CATEGORY_PATH = ("category_path", "category", "product_type", "categories", "product_category")

_MAPPING_TOP_KEYS = {"source", "format", "encoding", "csv", "fields", "category"}


def _names(value: Any, *, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{where} must be a column name or a non-empty list of column names")
    return tuple(value)


@dataclass(frozen=True)
class ImportMapping:
    """How one source's feed maps onto Product; see demo/mappings/myntra.toml for the file form."""

    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    category_columns: tuple[str, ...] = ()
    category_path: tuple[str, ...] = ()
    csv_delimiter: str | None = None
    overflow_into: str | None = None
    encoding: str = "utf-8"
    source: str = ""
    file_format: str | None = None

    @classmethod
    def default(cls) -> ImportMapping:
        """The mapping used without a mapping file: common column names, matched case-insensitively."""
        return cls(fields=dict(DEFAULT_FIELDS), category_path=DEFAULT_CATEGORY_PATH)

    @classmethod
    def from_dict(cls, data: dict) -> ImportMapping:
        """Build a mapping from its TOML form; raise ValueError naming what is wrong."""
        unknown = set(data) - _MAPPING_TOP_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (expected {sorted(_MAPPING_TOP_KEYS)})")
        fields_table = dict(data.get("fields") or {})
        attributes_value = fields_table.pop("attributes", {})
        unknown = set(fields_table) - set(PRODUCT_FIELDS)
        if unknown:
            raise ValueError(f"[fields]: unknown product fields {sorted(unknown)} (expected {list(PRODUCT_FIELDS)} "
                             "or attributes)")
        fields = {name: _names(value, where=f"[fields] {name}") for name, value in fields_table.items()}
        for required in ("external_id", "title"):
            if required not in fields:
                raise ValueError(f"[fields] must name the {required} column")
        if isinstance(attributes_value, list):
            attributes = {name: (name,) for name in _names(attributes_value, where="[fields] attributes")}
        elif isinstance(attributes_value, dict):
            attributes = {key: _names(value, where=f"[fields] attributes.{key}")
                          for key, value in attributes_value.items()}
        else:
            raise ValueError("[fields] attributes must be a list of columns or a table {key = column}")
        category = dict(data.get("category") or {})
        unknown = set(category) - {"columns", "path"}
        if unknown:
            raise ValueError(f"[category]: unknown keys {sorted(unknown)} (expected columns or path)")
        if "columns" in category and "path" in category:
            raise ValueError("[category]: give either columns (one per level) or path (a whole path), not both")
        csv_table = dict(data.get("csv") or {})
        unknown = set(csv_table) - {"delimiter", "overflow_into"}
        if unknown:
            raise ValueError(f"[csv]: unknown keys {sorted(unknown)} (expected delimiter, overflow_into)")
        delimiter = csv_table.get("delimiter")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ValueError("[csv] delimiter must be one character")
        encoding = data.get("encoding", "utf-8")
        try:
            codec = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"unknown encoding {encoding!r}") from None
        if codec.name.startswith(("utf-16", "utf-32")):
            raise ValueError(f"encoding {encoding!r} is not supported: convert the file to UTF-8")
        file_format = data.get("format")
        if file_format not in (None, "jsonl", "csv"):
            raise ValueError(f"format must be jsonl or csv, got {file_format!r}")
        return cls(
            fields=fields,
            attributes=attributes,
            category_columns=_names(category["columns"], where="[category] columns") if "columns" in category else (),
            category_path=_names(category["path"], where="[category] path") if "path" in category else (),
            csv_delimiter=delimiter,
            overflow_into=csv_table.get("overflow_into"),
            encoding=codec.name,
            source=str(data.get("source", "")),
            file_format=file_format,
        )

    def to_dict(self) -> dict:
        """Return the TOML-shaped dict (stored in ImportRun.options so a run says how it read its file)."""
        data: dict[str, Any] = {"encoding": self.encoding, "fields": {k: list(v) for k, v in self.fields.items()}}
        data["fields"]["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        if self.source:
            data["source"] = self.source
        if self.file_format:
            data["format"] = self.file_format
        if self.category_columns:
            data["category"] = {"columns": list(self.category_columns)}
        elif self.category_path:
            data["category"] = {"path": list(self.category_path)}
        csv_table = {k: v for k, v in (("delimiter", self.csv_delimiter), ("overflow_into", self.overflow_into)) if v}
        if csv_table:
            data["csv"] = csv_table
        return data


def mapping_load(*, path: Path) -> ImportMapping:
    """Read a mapping file (TOML); raise ValueError with the file's name (not its server path) and what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read mapping {path.name}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"mapping {path.name} is not valid TOML: {exc}") from exc
    try:
        return ImportMapping.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"mapping {path.name}: {exc}") from exc
