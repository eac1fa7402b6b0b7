"""Pure normalisation of the values real product feeds send: text, category paths, prices, flags.

No Django here: these functions are unit-tested on their own and shared by the product and taxonomy imports.
"""

from __future__ import annotations

import csv
import html
import json
import re
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PATH_SEPARATOR = " > "

# Delimiter tiers, strongest first: the first tier present in a path splits it, on every delimiter of that tier
# at once ('A > B » C' mixes arrows; '>>' is one delimiter, not '>' twice). A weaker delimiter inside a level
# stays part of its name: 'Apparel > Tops/T-shirts' keeps 'Tops/T-shirts', and '//' outranks '/', so
# 'Apparel // Tops/T-shirts' does too. Whitespace around a delimiter goes with it.
PATH_DELIMITER_TIERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\s*(?:>|›|»|→|＞)+\s*"),
    re.compile(r"\s*[|¦]+\s*"),
    re.compile(r"\s*/{2,}\s*"),
    re.compile(r"\s*\\+\s*"),
    re.compile(r"\s*/\s*"),
)
# The strong tiers (arrows, pipes) never occur inside a category name: a list item holding one is a whole path.
_STRONG_TIERS = PATH_DELIMITER_TIERS[:2]
# What a broken list leaves around its names: brackets and quotes ('["Home >> Curtains', "Tops'").
_STRAY_EDGES = "[]\"“”`"
# Between the items of a list that is not valid JSON (a Python repr, a truncated cell): ', ' or "," etc.
_LIST_ITEM_SPLIT_RE = re.compile(r"""["'“”]\s*,\s*["'“”]""")
_MAX_NESTING = 20

CSV_DELIMITERS = ",;\t|"

_TAG_RE = re.compile(r"<!--.*?-->|</?[a-zA-Z][^<>]*>", re.DOTALL)
_BLOCK_TAG_RE = re.compile(r"</?(?:br|p|div|li|ul|ol|tr|td|th|h[1-6]|table)\b[^<>]*>", re.IGNORECASE)
# C0/C1 control characters and zero-width marks that feeds leak into text (tabs and newlines are whitespace).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")


def text_clean(value: object) -> str:
    """Return a feed value as one line of plain text: HTML tags stripped, entities unescaped, spaces collapsed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    if "<" in text or "&" in text:
        # Twice, because feeds often send escaped HTML ('&lt;p&gt;Soft &amp;amp; warm&lt;/p&gt;').
        for _ in range(2):
            text = _BLOCK_TAG_RE.sub(" ", text)
            text = _TAG_RE.sub("", text)
            text = html.unescape(text)
    if not text.isascii():
        text = _CONTROL_RE.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    elif not text.isprintable():
        text = _CONTROL_RE.sub("", text)
    return " ".join(text.split())


def external_id_clean(value: object) -> str:
    """Return a feed's product id as text: numbers as written (15970.0 is '15970'), controls dropped, trimmed.

    Objects, lists and booleans are no id ('').
    """
    if value is None or isinstance(value, (dict, list, tuple, bool)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _CONTROL_RE.sub("", str(value)).strip()


def category_path_split(value: object) -> list[str]:
    """Split a feed's category path into clean level names, whatever its shape and delimiter.

    A value may be a string delimited by any of PATH_DELIMITER_TIERS, a list (JSON lines), a JSON list in a
    string, a list that is not valid JSON ("['A', 'B']", '["A >> B'), or lists nested in lists. A list of plain
    names is one path, a level per item; a list whose items are paths themselves (an item holding an arrow or a
    pipe, every item holding a slash, or nested lists) holds alternative paths, and the first non-empty one is
    kept — unless a later one extends it (same leading levels, deeper), then the deepest such extension is.
    Feeds list their primary category first; the longest path may be another branch altogether. Stray brackets
    and quotes around names are dropped, and so are empty levels: 'A > > B' is ['A', 'B'].
    """
    chosen: list[str] = []
    for levels in _path_alternatives(value, depth=0):
        if not chosen:
            chosen = levels
        elif len(levels) > len(chosen) and [n.lower() for n in levels[:len(chosen)]] == [n.lower() for n in chosen]:
            chosen = levels
    return chosen


def _path_alternatives(value: object, *, depth: int) -> list[list[str]]:
    """Return the non-empty paths a feed value holds, in order, each as its level names."""
    if value is None or isinstance(value, (dict, bool)) or depth > _MAX_NESTING:
        return []
    if isinstance(value, (list, tuple)):
        items = [item for item in value if item is not None and not isinstance(item, (dict, bool))]
        if all(not isinstance(item, (list, tuple)) for item in items):
            texts = [text for text in (text_clean(item) for item in items) if _stray_strip(text)]
            if len(texts) != 1 and not _items_are_paths(texts):
                names = [_stray_strip(text) for text in texts]
                return [names] if names else []
            items = texts
        return [levels for item in items for levels in _path_alternatives(item, depth=depth + 1)]
    text = value if isinstance(value, str) else str(value)
    stripped = text.strip()
    if stripped[:1] == "[" or (stripped[:1] == '"' and stripped[-1:] == '"' and len(stripped) > 1):
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, (list, str)) and parsed != stripped:
            return _path_alternatives(parsed, depth=depth + 1)
        if stripped[:1] == "[":
            inner = stripped.lstrip("[").rstrip("]")
            if _LIST_ITEM_SPLIT_RE.search(inner):
                items = [item.strip().strip("'\"“”").strip() for item in _LIST_ITEM_SPLIT_RE.split(inner)]
                return _path_alternatives(items, depth=depth + 1)
    levels = _levels_split(text_clean(text))
    return [levels] if levels else []


def _items_are_paths(texts: list[str]) -> bool:
    """Whether list items are whole paths (alternatives) rather than one level each."""
    if any(tier.search(text) for text in texts for tier in _STRONG_TIERS):
        return True
    if any(text.lstrip()[:1] == "[" for text in texts):
        return True
    return bool(texts) and all(any(tier.search(text) for tier in PATH_DELIMITER_TIERS[2:]) for text in texts)


def _levels_split(text: str) -> list[str]:
    """Split one cleaned path on the strongest delimiter tier it holds."""
    parts = [text]
    for tier in PATH_DELIMITER_TIERS:
        if tier.search(text):
            parts = tier.split(text)
            break
    return [name for name in (_stray_strip(part) for part in parts) if name]


def _stray_strip(name: str) -> str:
    """Drop the brackets and quotes a broken list leaves at a name's ends ("Men's" and "Kids'" keep theirs)."""
    name = name.strip().strip(_STRAY_EDGES).strip()
    if name.startswith("'"):
        name = name.strip("'").strip()
    return name


def category_path_normalise(value: object) -> str:
    """Return a feed's category path as 'A > B > C' ('' when it names nothing)."""
    return PATH_SEPARATOR.join(category_path_split(value))


@dataclass(frozen=True)
class Price:
    amount: Decimal | None
    currency: str  # ISO 4217 code, or '' when the value did not say


# Longest first, so that 'US$' is not read as '$'.
CURRENCY_SYMBOLS: dict[str, str] = {
    "us$": "USD", "usd$": "USD", "c$": "CAD", "ca$": "CAD", "a$": "AUD", "au$": "AUD", "nz$": "NZD",
    "hk$": "HKD", "r$": "BRL", "rs.": "INR", "rs": "INR", "inr": "INR", "kr.": "", "kr": "",
    "zł": "PLN", "€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "₹": "INR", "₽": "RUB", "₩": "KRW",
    "₺": "TRY", "₪": "ILS", "₫": "VND", "฿": "THB", "₱": "PHP", "euro": "EUR", "euros": "EUR",
}
_CURRENCY_WORDS = sorted(CURRENCY_SYMBOLS, key=len, reverse=True)
_CURRENCY_CODE_RE = re.compile(r"^[A-Za-z]{3}$")
_LEADING_CODE_RE = re.compile(r"^([A-Za-z]{3})(?![A-Za-z])(.*)$")
_TRAILING_CODE_RE = re.compile(r"^(.*?)(?<![A-Za-z])([A-Za-z]{3})$")
_NUMBER_RE = re.compile(r"^[+-]?\d[\d.,'\s\u00a0\u202f]*$|^[+-]?[.,]\d+$")
# Money never needs more than 10 integer digits here (Product.price is max_digits=12, decimal_places=2).
_PRICE_LIMIT = Decimal("10000000000")
_CENT = Decimal("0.01")


def currency_code(value: object) -> str:
    """Return an ISO 4217 code for '€', 'eur', 'Rs.'…; raise ValueError when the value is no currency."""
    text = text_clean(value)
    if not text:
        return ""
    lowered = text.lower()
    if lowered in CURRENCY_SYMBOLS and CURRENCY_SYMBOLS[lowered]:
        return CURRENCY_SYMBOLS[lowered]
    if _CURRENCY_CODE_RE.match(text):
        return text.upper()
    raise ValueError(f"unknown currency {text!r}")


def _split_currency(text: str) -> tuple[str, str]:
    """Peel a currency symbol or code off either end of a price string; return (number text, code)."""
    lowered = text.lower()
    for word in _CURRENCY_WORDS:
        # A word-like symbol must stand alone: 'Rs 12' is rupees, '12 Dollars' is not 'Dolla' + 'rs'.
        if lowered.startswith(word) and not (word[-1].isalpha() and lowered[len(word):len(word) + 1].isalpha()):
            return text[len(word):].strip(), CURRENCY_SYMBOLS[word]
        if lowered.endswith(word) and not (word[0].isalpha() and lowered[-len(word) - 1:-len(word)].isalpha()):
            return text[: -len(word)].strip(), CURRENCY_SYMBOLS[word]
    if match := _LEADING_CODE_RE.match(text):
        return match.group(2).strip(), match.group(1).upper()
    if match := _TRAILING_CODE_RE.match(text):
        return match.group(1).strip(), match.group(2).upper()
    return text.strip(), ""


def _decimal_from_number_text(text: str) -> Decimal:
    """Read '1.299,00', '1,299.00', '1 299,5', "1'299", '12,99' or '1299' as a Decimal."""
    text = re.sub(r"[\s\u00a0\u202f']", "", text)
    sign = ""
    if text[:1] in "+-":
        sign, text = text[0], text[1:]
    dots, commas = text.count("."), text.count(",")
    if dots and commas:
        decimal_mark = "." if text.rfind(".") > text.rfind(",") else ","
        thousands = "," if decimal_mark == "." else "."
        if text.count(decimal_mark) > 1:
            raise ValueError("two decimal marks")
        text = text.replace(thousands, "").replace(decimal_mark, ".")
    elif dots + commas > 1:
        mark = "." if dots else ","
        groups = text.split(mark)
        if not all(len(group) == 3 for group in groups[1:]):
            raise ValueError("inconsistent thousands separators")
        text = "".join(groups)
    elif dots + commas == 1:
        mark = "." if dots else ","
        whole, fraction = text.split(mark)
        # One mark followed by exactly three digits is a thousands separator ('1.299' in a euro feed,
        # '1,299' in a rupee feed), unless the whole part is 0 ('0.299').
        if len(fraction) == 3 and whole not in ("", "0"):
            text = whole + fraction
        else:
            text = f"{whole or '0'}.{fraction}"
    try:
        return Decimal(sign + text)
    except InvalidOperation as exc:
        raise ValueError("not a number") from exc


def price_parse(value: object) -> Price:
    """Parse a real-world price ('1.299,00 EUR', '$12.99', '12,99 €', '1299', 12.5) into amount + currency.

    Empty values give Price(None, ''). Raise ValueError (with the reason) for what cannot be read as one
    non-negative amount: ranges, words, negative or absurdly large values.
    """
    if value is None or value == "":
        return Price(None, "")
    if isinstance(value, bool):
        raise ValueError(f"not a price: {value!r}")
    if isinstance(value, (int, float, Decimal)):
        amount = Decimal(str(value))
        currency = ""
    else:
        text = text_clean(value)
        if not text:
            return Price(None, "")
        number_text, currency = _split_currency(text)
        if not number_text or not _NUMBER_RE.match(number_text):
            raise ValueError(f"unreadable price {text!r}")
        try:
            amount = _decimal_from_number_text(number_text)
        except ValueError as exc:
            raise ValueError(f"unreadable price {text!r}: {exc}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite price: {value!r}")
    if amount < 0:
        raise ValueError(f"negative price {value!r}")
    if amount >= _PRICE_LIMIT:
        raise ValueError(f"price out of range {value!r}")
    return Price(amount.quantize(_CENT, rounding=ROUND_HALF_UP), currency)


_TRUE = {"true", "1", "yes", "y", "t", "x"}
_FALSE = {"false", "0", "no", "n", "f"}


def bool_parse(value: object) -> bool | None:
    """Read true/false/1/0/yes/no (any case); empty is None; raise ValueError otherwise."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


_GOOGLE_LINE_RE = re.compile(r"^\s*(\d+)\s*-\s*(.*?)\s*$")


def google_taxonomy_line_parse(line: str) -> tuple[str, list[str]]:
    """Parse '123 - A > B > C' into ('123', ['A', 'B', 'C']); raise ValueError with the reason."""
    match = _GOOGLE_LINE_RE.match(line)
    if not match:
        raise ValueError("expected 'ID - Level 1 > Level 2 > …'")
    category_id, path = match.groups()
    # Google's file always uses ' > '; splitting on it alone keeps names such as 'Hi-Fi / Audio' intact.
    names = [text_clean(name) for name in path.split(">")]
    if not path or any(not name for name in names):
        raise ValueError("empty category name in path")
    return category_id, names


def csv_delimiter_sniff(sample: str) -> str:
    """Return the delimiter of a CSV sample, among , ; tab and |.

    csv.Sniffer decides on a sample cut at a line boundary; when it fails, or picks a character the header
    does not contain, the delimiter most frequent in the header wins (',' for a one-column file).
    """
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # a partial last line confuses the sniffer
    header = lines[0] if lines else ""
    try:
        delimiter = csv.Sniffer().sniff("".join(lines[:200]), delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if delimiter and delimiter in header:
        return delimiter
    counts = {candidate: header.count(candidate) for candidate in CSV_DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","
