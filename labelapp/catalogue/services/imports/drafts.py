"""Product drafts: a feed record's normalised product values, or the reason the record is rejected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelapp.catalogue import normalise
from labelapp.catalogue.models import Product
from labelapp.catalogue.services.imports.images import ImageOutcome
from labelapp.catalogue.services.imports.mapping import ImportMapping

EXTERNAL_ID_MAX_LENGTH = Product._meta.get_field("external_id").max_length


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict, tuple)):
        return not value
    return False


class FieldReader:
    """Read mapped fields from a record: exact names first, then dotted paths (nested JSON), then any case."""

    def __init__(self, header: list[str] | None = None):
        # A CSV header is fixed: resolve names against it once instead of per row.
        self._header_lower = {name.lower(): name for name in reversed(header)} if header else None

    def resolve(self, name: str) -> str | None:
        if self._header_lower is None:
            return name
        return self._header_lower.get(name.lower())

    def first(self, record: dict, candidates: tuple[str, ...]) -> Any:
        lowered: dict[str, str] | None = None
        for name in candidates:
            if name in record:
                value = record[name]
            elif self._header_lower is not None:
                actual = self._header_lower.get(name.lower())
                value = record.get(actual) if actual else None
            else:
                value = _dotted_get(record, name) if "." in name else None
                if value is None:
                    if lowered is None:
                        lowered = {key.lower(): key for key in record if isinstance(key, str)}
                    actual = lowered.get(name.lower())
                    value = record.get(actual) if actual else None
            if not _is_empty(value):
                return value
        return None


def _dotted_get(record: dict, name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(slots=True)
class ProductDraft:
    line: int
    values: dict[str, Any]
    image_ref: str
    warnings: list[str]
    raw_text: str = ""
    image: ImageOutcome | None = None  # decided once, before the batch is written


_FIELD_LIMITS = {name: Product._meta.get_field(name).max_length
                 for name in ("brand", "gender", "size", "category_path", "image_ref")}


def _scalar_text(value: Any, *, name: str, warnings: list[str]) -> str:
    """Return a value as one cleaned text; a list gives its first value, with a warning when it held more."""
    if isinstance(value, (list, tuple)):
        values = [item for item in value if not _is_empty(item)]
        if len(values) > 1:
            warnings.append(f"{name} was a list of {len(values)} values; the first was kept")
        value = values[0] if values else ""
    if isinstance(value, dict):
        return ""
    return normalise.text_clean(value)


def product_draft_build(*, record: dict, line: int, mapping: ImportMapping, reader: FieldReader,
                        raw_text: str = "") -> ProductDraft | str:
    """Return a row's normalised product values, or the reason the row is rejected."""
    fields = mapping.fields
    external_id = normalise.external_id_clean(reader.first(record, fields.get("external_id", ())))
    if not external_id:
        return f"missing external id (looked in {', '.join(fields.get('external_id', ()))})"
    if len(external_id) > EXTERNAL_ID_MAX_LENGTH:
        return f"external id longer than {EXTERNAL_ID_MAX_LENGTH} characters ({len(external_id)})"
    warnings: list[str] = []
    title = _scalar_text(reader.first(record, fields.get("title", ())), name="title", warnings=warnings)
    if not title:
        return f"missing title (looked in {', '.join(fields.get('title', ()))})"

    def text(name: str) -> str:
        value = _scalar_text(reader.first(record, fields[name]), name=name, warnings=warnings) if name in fields else ""
        limit = _FIELD_LIMITS.get(name)
        if limit and len(value) > limit:
            warnings.append(f"{name} longer than {limit} characters: cut")
            value = value[:limit]
        return value

    # Read in this order: it is the order of the row's warnings.
    category_path = _category_path_read(record, mapping=mapping, reader=reader, warnings=warnings)
    price, currency = _price_read(record, fields=fields, reader=reader, warnings=warnings)
    attributes = _attributes_read(record, mapping=mapping, reader=reader)
    image_ref = _image_ref_read(record, fields=fields, reader=reader, warnings=warnings)

    return ProductDraft(
        line=line,
        values={
            "external_id": external_id,
            "title": title,
            "description": text("description"),
            "brand": text("brand"),
            "gender": text("gender"),
            "size": text("size"),
            "category_path": category_path,
            "price": price.amount,
            "currency": currency,
            "attributes": attributes,
            "raw": record,
        },
        image_ref=image_ref,
        warnings=warnings,
        raw_text=raw_text,
    )


def _category_path_read(record: dict, *, mapping: ImportMapping, reader: FieldReader, warnings: list[str]) -> str:
    """Return the record's normalised category path, from one column per level or a whole-path column."""
    if mapping.category_columns:
        names = [_scalar_text(reader.first(record, (column,)), name=f"category column {column}", warnings=warnings)
                 for column in mapping.category_columns]
        category_path = normalise.PATH_SEPARATOR.join(name for name in names if name)
    else:
        category_path = normalise.category_path_normalise(reader.first(record, mapping.category_path))
    if len(category_path) > _FIELD_LIMITS["category_path"]:
        warnings.append(f"category path longer than {_FIELD_LIMITS['category_path']} characters: cut")
        category_path = category_path[: _FIELD_LIMITS["category_path"]]
    return category_path


def _price_read(record: dict, *, fields: dict[str, tuple[str, ...]], reader: FieldReader,
                warnings: list[str]) -> tuple[normalise.Price, str]:
    """Return the record's price and its currency code; a value that does not parse is left empty, with a warning."""
    price_value = reader.first(record, fields["price"]) if "price" in fields else None
    price_currency = ""
    if isinstance(price_value, dict):  # {"value": "12.99", "currency": "EUR"} (Content API style)
        price_currency = price_value.get("currency") or price_value.get("currencyCode") or ""
        price_value = price_value.get("value", price_value.get("amount"))
    try:
        price = normalise.price_parse(price_value)
    except ValueError as exc:
        warnings.append(f"{exc}: price left empty")
        price = normalise.Price(None, "")
    currency = price.currency
    currency_value = reader.first(record, fields["currency"]) if "currency" in fields else None
    if _is_empty(currency_value):
        currency_value = price_currency
    if not _is_empty(currency_value):
        try:
            currency = normalise.currency_code(currency_value) or currency
        except ValueError as exc:
            warnings.append(f"{exc}: currency left empty")
    return price, currency


def _attributes_read(record: dict, *, mapping: ImportMapping, reader: FieldReader) -> dict[str, Any]:
    """Return the record's mapped attributes with their text cleaned, leaving out empty ones."""
    attributes: dict[str, Any] = {}
    for key, candidates in mapping.attributes.items():
        value = reader.first(record, candidates)
        if isinstance(value, str):
            value = normalise.text_clean(value)
        elif isinstance(value, list):
            value = [normalise.text_clean(item) if isinstance(item, str) else item for item in value]
        if not _is_empty(value):
            attributes[key] = value
    return attributes


def _image_ref_read(record: dict, *, fields: dict[str, tuple[str, ...]], reader: FieldReader,
                    warnings: list[str]) -> str:
    """Return the record's image reference (a path or a URL; the first of a list), '' when none fits."""
    image_ref = ""
    if "image" in fields:
        image_value = reader.first(record, fields["image"])
        if isinstance(image_value, (list, tuple)):
            image_value = next((item for item in image_value if not _is_empty(item)), None)
        if isinstance(image_value, (str, int)):
            image_ref = str(image_value).strip()
        if len(image_ref) > _FIELD_LIMITS["image_ref"]:
            warnings.append(f"image reference longer than {_FIELD_LIMITS['image_ref']} characters: ignored")
            image_ref = ""
    return image_ref
