"""Legacy rules: import them from a file, bootstrap them from category names, apply them to the catalogue.

The legacy categoriser assigns independent, positive-only multi-labels: every active rule that fires on a
product leaves a RuleLabel (product, rule, category). The matching itself is `labelapp.catalogue.rules_engine`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from labelapp.catalogue.models import (
    RULE_FIELDS,
    Category,
    CategorySource,
    ImportKind,
    ImportRowIssue,
    ImportRun,
    LegacyRule,
    Product,
    RowOutcome,
    RuleCombinator,
    RuleLabel,
    rule_conditions_errors,
)
from labelapp.catalogue.rules_engine import (
    RuleDefinition,
    category_name_keywords,
    rule_definition_errors,
    rules_compile,
)
from labelapp.catalogue.services.imports.runs import import_run_fail, import_run_start, import_run_succeed
from labelapp.catalogue.services.product_categories import products_category_refresh
from labelapp.catalogue.services.trust import trust_and_categories_refresh

logger = logging.getLogger(__name__)

RULES_FILE_FORMAT = """\
Rules file formats (UTF-8; the file extension picks the format, otherwise a leading "[" or "{" means JSON):

JSON: a list of rules, or an object {"rules": [...]}. One rule:
  {"name": "trousers",                      unique; an existing rule of that name is updated (upsert)
   "category": "Apparel > Bottomwear > Trousers",   full path ("A > B > C") or the category's external id
   "combinator": "or",                      "and" (default: every condition) or "or" (any condition)
   "active": true,                          optional, default true
   "conditions": [{"field": "title", "op": "contains_word", "value": "trousers"},
                  {"field": "title", "op": "contains_word", "value": "trouser"}]}
  Issues are reported with the rule's 1-based position in the list as the line.

CSV: a header line, then one condition per line; lines with the same name form one rule:
  name,category,field,op,value,combinator
  trousers,Apparel > Bottomwear > Trousers,title,contains_word,trousers,or
  trousers,Apparel > Bottomwear > Trousers,title,contains_word,trouser,or
  men-shirts,Apparel > Topwear > Shirts,title,contains_word,shirt,and
  men-shirts,Apparel > Topwear > Shirts,gender,equals,men,and
  "combinator" may be blank (default "and") and an optional "active" column takes true/false; the lines of
  one rule must agree on category, combinator and active. Issues carry the file's line number.

Fields: <FIELDS>.
Ops (contains, contains_word and equals ignore case and treat any run of whitespace as one space):
  contains       the value is a substring of the field ("pant" fires on "Sweatpants")
  contains_word  the value appears as whole word(s): no letter, digit or "_" right before or after it
                 ("pant" does not fire on "pants"; "t-shirt" does not fire on "tshirt")
  equals         the whole field equals the value
  regex          Python re.search on the raw field: case-sensitive unless it starts with (?i) (or uses
                 (?i:...) for a part); other inline flags (?s) (?m) (?x) (?a) work the same way.

A bad rule (unknown category, field or op, empty value, bad regex, duplicate name in a JSON file) is rejected
on its own with the reason; the other rules are imported. Rules are matched by `manage.py apply_rules`.
""".replace("<FIELDS>", ", ".join(RULE_FIELDS))

_APPLY_LOCK_KEY = zlib.crc32(b"labelapp.rules_apply")
BOOTSTRAP_ORIGIN = "bootstrap"


# --- import -----------------------------------------------------------------------------------------------------


@dataclass
class _ParsedRule:
    """A rule read from a file, before validation; `line` is the JSON index or the CSV line of its first row."""

    line: int
    raw: str
    name: object = None
    category: object = None
    conditions: object = None
    combinator: object = RuleCombinator.ALL
    active: object = True
    errors: list[str] = dataclass_field(default_factory=list)
    condition_lines: list[int] = dataclass_field(default_factory=list)  # CSV: the line of each condition
    readable: bool = True  # False: nothing but `errors` is worth reporting

    def locate(self, message: str) -> str:
        """Say "line 7" rather than "condition 2" when the conditions came from CSV lines."""
        match = _CONDITION_NUMBER_RE.match(message)
        if match is None or not self.condition_lines:
            return message
        line = self.condition_lines[int(match[1]) - 1]
        return message[match.end():].lstrip() if line == self.line else f"line {line}:{message[match.end():]}"


_CONDITION_NUMBER_RE = re.compile(r"condition (\d+):")


class RulesFileError(ValueError):
    """The whole file cannot be read as rules (bad JSON, missing CSV columns)."""


def rules_import(*, import_run: ImportRun, path: str | Path) -> ImportRun:
    """Upsert the rules of a JSON or CSV file by name, recording every rejected rule on the run.

    File formats (RULES_FILE_FORMAT has the full description, shown by `manage.py import_rules --help`):

    * JSON: `[rule, ...]` or `{"rules": [rule, ...]}`, a rule being `{"name", "category", "conditions":
      [{"field", "op", "value"}, ...], "combinator": "and"|"or" (default and), "active": bool (default true)}`.
    * CSV: header `name,category,field,op,value[,combinator][,active]`, one condition per line; lines with
      the same name form one rule and must agree on category, combinator and active.

    `category` is a full path ('A > B > C', spaces around '>' optional) or an external id. Rules are
    upserted by name (origin "imported"); unchanged rules are counted as neither created nor updated.
    A bad rule never aborts the import: it becomes an ImportRowIssue (outcome rejected; the rule's 1-based
    index in a JSON list, or its CSV line; the reason; the rule as written). A file that cannot be read at
    all fails the run (status failed, `error` says why). Only a queued run is started, so a duplicate
    delivery is a no-op. The new rules take effect on products at the next `rules_apply`.
    Create the run with `imports.runs.import_run_create(kind=ImportKind.RULES, ...)`.
    """
    if import_run.kind != ImportKind.RULES:
        raise ValueError(f"import run {import_run.pk} is a {import_run.kind!r} import, not a rules import")
    if not import_run_start(import_run=import_run):
        return import_run
    try:
        parsed = _rules_file_read(Path(path))
    except (OSError, UnicodeDecodeError, RulesFileError) as exc:
        import_run_fail(import_run=import_run, error=str(exc))
        return import_run
    try:
        with transaction.atomic():
            counts = _rules_upsert(import_run=import_run, parsed=parsed)
    except Exception as exc:
        import_run_fail(import_run=import_run, error=f"{type(exc).__name__}: {exc}")
        raise
    import_run_succeed(import_run=import_run, counts=counts)
    return import_run


def _rules_file_read(path: Path) -> list[_ParsedRule]:
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in ("[", "{")):
        return _rules_json_parse(text)
    return _rules_csv_parse(text)


def _rules_json_parse(text: str) -> list[_ParsedRule]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesFileError(f"invalid JSON: {exc}") from exc
    if isinstance(document, dict) and "rules" in document:
        document = document["rules"]
    if not isinstance(document, list):
        raise RulesFileError('a JSON rules file holds a list of rules or {"rules": [...]}')
    parsed, first_index = [], {}
    for index, item in enumerate(document, start=1):
        rule = _ParsedRule(line=index, raw=json.dumps(item, ensure_ascii=False))
        parsed.append(rule)
        if not isinstance(item, dict):
            rule.errors.append("a rule must be a JSON object")
            rule.readable = False
            continue
        rule.name, rule.category, rule.conditions = item.get("name"), item.get("category"), item.get("conditions")
        rule.combinator = item.get("combinator", RuleCombinator.ALL)
        rule.active = item.get("active", True)
        if isinstance(rule.name, str):
            if rule.name.strip() in first_index:
                rule.errors.append(f"duplicate rule name {rule.name.strip()!r} (first at index "
                                   f"{first_index[rule.name.strip()]})")
            first_index.setdefault(rule.name.strip(), index)
    return parsed


_CSV_REQUIRED = ("name", "category", "field", "op", "value")
_BOOLEANS = {"": None, "true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def _rules_csv_parse(text: str) -> list[_ParsedRule]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise RulesFileError("the CSV file is empty") from None
    missing = [column for column in _CSV_REQUIRED if column not in header]
    if missing:
        raise RulesFileError(f"the CSV header lacks column(s) {', '.join(missing)}; expected "
                             "name,category,field,op,value[,combinator][,active]")
    by_name: dict[str, _ParsedRule] = {}
    parsed: list[_ParsedRule] = []
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        record = {column: (row[position].strip() if position < len(row) else "")
                  for position, column in enumerate(header)}
        raw = _csv_line(row)
        name = record["name"]
        if not name:
            parsed.append(_ParsedRule(line=start, raw=raw, errors=["name is required"], readable=False))
            continue
        combinator = record.get("combinator") or None
        active = _BOOLEANS.get(record.get("active", "").lower(), record.get("active"))
        rule = by_name.get(name)
        if rule is None:
            rule = by_name[name] = _ParsedRule(line=start, raw=raw, name=name, category=record["category"],
                                               conditions=[], combinator=combinator, active=active)
            parsed.append(rule)
        else:
            rule.raw += "\n" + raw
            for label, value, current in (("category", record["category"], rule.category),
                                          ("combinator", combinator, rule.combinator),
                                          ("active", active, rule.active)):
                if value is not None and current is not None and value != current:
                    rule.errors.append(f"line {start}: {label} {value!r} differs from the rule's {current!r}")
            rule.combinator = rule.combinator if rule.combinator is not None else combinator
            rule.active = rule.active if rule.active is not None else active
        rule.conditions.append({"field": record["field"], "op": record["op"], "value": record["value"]})
        rule.condition_lines.append(start)
    for rule in by_name.values():
        rule.combinator = rule.combinator or RuleCombinator.ALL
        rule.active = True if rule.active is None else rule.active
    return parsed


def _category_lookup(references: Iterable[str]) -> dict[str, Category]:
    """Map each reference (full path, or external id) to its category; full path wins when both match."""
    paths = {reference: _path_normalise(reference) for reference in references}
    found = Category.objects.filter(Q(full_path__in=set(paths.values())) | Q(external_id__in=set(paths)))
    by_path, by_external_id = {}, {}
    for category in found:
        by_path[category.full_path] = category
        by_external_id[category.external_id] = category
    return {reference: by_path.get(path) or by_external_id.get(reference)
            for reference, path in paths.items() if by_path.get(path) or by_external_id.get(reference)}


def _path_normalise(reference: str) -> str:
    return Category.PATH_SEPARATOR.join(part.strip() for part in reference.split(">"))


def _rule_errors(rule: _ParsedRule, categories: dict[str, Category]) -> list[str]:
    errors = list(rule.errors)
    if not rule.readable:
        return errors
    if not isinstance(rule.name, str) or not rule.name.strip():
        errors.append("name is required")
    elif len(rule.name.strip()) > 255:
        errors.append("name is longer than 255 characters")
    if not isinstance(rule.category, str) or not rule.category.strip():
        errors.append("category is required")
    elif rule.category.strip() not in categories:
        errors.append(f"unknown category {rule.category.strip()!r} (give its full path 'A > B > C' or external id)")
    if not isinstance(rule.active, bool):
        errors.append(f"active must be true or false, got {rule.active!r}")
    if rule.combinator not in RuleCombinator.values:
        errors.append(f"unknown combinator {rule.combinator!r} (one of {', '.join(RuleCombinator.values)})")
    condition_errors = rule_conditions_errors(rule.conditions)
    if not condition_errors:  # what the model accepts but the engine cannot use: whitespace-only values
        condition_errors = rule_definition_errors(conditions=rule.conditions, combinator=RuleCombinator.ALL)
    return errors + [rule.locate(message) for message in condition_errors]


def _rules_upsert(*, import_run: ImportRun, parsed: Sequence[_ParsedRule]) -> dict[str, int]:
    references = {rule.category.strip() for rule in parsed if isinstance(rule.category, str) and rule.category.strip()}
    categories = _category_lookup(references)
    names = {rule.name.strip() for rule in parsed if isinstance(rule.name, str)}
    existing = {rule.name: rule for rule in LegacyRule.objects.filter(name__in=names)}
    issues, to_create, to_update = [], [], []
    for parsed_rule in parsed:
        errors = _rule_errors(parsed_rule, categories)
        if not errors:
            rule = existing.get(parsed_rule.name.strip()) or LegacyRule(name=parsed_rule.name.strip())
            before = (rule.category_id, rule.conditions, rule.combinator, rule.active, rule.origin)
            rule.category = categories[parsed_rule.category.strip()]
            rule.conditions = [{"field": c["field"], "op": c["op"], "value": c["value"]}
                               for c in parsed_rule.conditions]
            rule.combinator, rule.active, rule.origin = parsed_rule.combinator, parsed_rule.active, "imported"
            try:
                # Category is resolved above and the name is upserted: skip their per-row queries.
                rule.full_clean(exclude=["category"], validate_unique=False, validate_constraints=False)
            except ValidationError as exc:
                errors = [f"{key}: {'; '.join(messages)}" for key, messages in exc.message_dict.items()]
        if errors:
            issues.append(ImportRowIssue(import_run=import_run, line=parsed_rule.line, outcome=RowOutcome.REJECTED,
                                         reason="; ".join(errors)[:1000], raw=parsed_rule.raw))
        elif rule.pk is None:
            to_create.append(rule)
        elif before != (rule.category_id, rule.conditions, rule.combinator, rule.active, rule.origin):
            rule.updated_at = timezone.now()
            to_update.append(rule)
    LegacyRule.objects.bulk_create(to_create, batch_size=1000)
    LegacyRule.objects.bulk_update(
        to_update, ["category", "conditions", "combinator", "active", "origin", "updated_at"], batch_size=1000)
    ImportRowIssue.objects.bulk_create(issues, batch_size=1000)
    return {"rows_total": len(parsed), "rows_created": len(to_create), "rows_updated": len(to_update),
            "rows_rejected": len(issues)}


# --- bootstrap --------------------------------------------------------------------------------------------------


def _bootstrap_rule_name(*, category: Category, field: str) -> str:
    name = f"bootstrap:{field}:{category.external_id}"
    if len(name) > 255:
        name = f"bootstrap:{field}:sha1:{hashlib.sha1(category.external_id.encode()).hexdigest()}"
    return name


@transaction.atomic
def rules_bootstrap(*, categories: Iterable[Category] | None = None, field: str = "title") -> int:
    """Create or refresh one keyword rule per category from its name; return how many rules were written.

    `categories` defaults to every exclusive category. The rule is `field contains_word k1 OR k2 ...` with the
    keywords of `rules_engine.category_name_keywords` ('Trousers' → trousers, trouser; 'Track Pants' → track
    pants, track pant; '&' and ',' split a name, shared words are distributed; a generic single word such
    as 'Accessories' is skipped, and a name with no keyword left gets no rule). Rules are named
    `bootstrap:<field>:<category external id>` and have origin "bootstrap"; a re-run rewrites their
    conditions but keeps `active` (a rule someone switched off stays off) and never touches a rule of that
    name with another origin. Unchanged rules are not written or counted.
    """
    if field not in RULE_FIELDS:
        raise ValueError(f"unknown field {field!r} (one of {', '.join(RULE_FIELDS)})")
    categories = list(Category.objects.filter(is_exclusive=True) if categories is None else categories)
    wanted: dict[str, tuple[Category, list[dict]]] = {}
    for category in categories:
        keywords = category_name_keywords(category.name)
        if keywords:
            wanted[_bootstrap_rule_name(category=category, field=field)] = (
                category, [{"field": field, "op": "contains_word", "value": keyword} for keyword in keywords])
    existing = {rule.name: rule for rule in LegacyRule.objects.filter(name__in=wanted)}
    to_create, to_update, now = [], [], timezone.now()
    for name, (category, conditions) in wanted.items():
        rule = existing.get(name)
        if rule is None:
            rule = LegacyRule(name=name, category=category, conditions=conditions, combinator=RuleCombinator.ANY,
                              origin=BOOTSTRAP_ORIGIN)
            rule.clean()  # full_clean would query each category again; the conditions are what can be wrong
            to_create.append(rule)
        elif rule.origin == BOOTSTRAP_ORIGIN and (
                (rule.category_id, rule.conditions, rule.combinator) != (category.id, conditions, RuleCombinator.ANY)):
            rule.category, rule.conditions, rule.combinator, rule.updated_at = (
                category, conditions, RuleCombinator.ANY, now)
            rule.clean()
            to_update.append(rule)
    LegacyRule.objects.bulk_create(to_create, batch_size=1000)
    LegacyRule.objects.bulk_update(to_update, ["category", "conditions", "combinator", "updated_at"], batch_size=1000)
    return len(to_create) + len(to_update)


# --- apply ------------------------------------------------------------------------------------------------------


@dataclass
class RulesApplyResult:
    rules_active: int = 0
    rules_skipped: int = 0  # active rules whose stored conditions the engine cannot compile (logged)
    products_scanned: int = 0
    labels_created: int = 0
    labels_removed: int = 0
    products_labelled: int = 0  # products with at least one rule label after the run
    categories_set: int = 0  # products whose effective category was set (or changed) from their rule labels
    categories_reverted: int = 0  # products whose rule-based category no longer holds, back to the feed's


def _rules_matcher_build(result: RulesApplyResult):
    """Compile the active rules, with a random sample of products to pick the anchors of "and" rules."""
    definitions = []
    for rule in LegacyRule.objects.filter(active=True).values("id", "category_id", "conditions", "combinator"):
        result.rules_active += 1
        errors = rule_conditions_errors(rule["conditions"]) or rule_definition_errors(
            conditions=rule["conditions"], combinator=rule["combinator"])
        if errors:
            result.rules_skipped += 1
            logger.warning("rules_apply skips rule %s: %s", rule["id"], "; ".join(errors))
            continue
        definitions.append(RuleDefinition.from_dicts(rule_id=rule["id"], category_id=rule["category_id"],
                                                     conditions=rule["conditions"], combinator=rule["combinator"]))
    needs_sample = any(rule.combinator == RuleCombinator.ALL and len(rule.conditions) > 1 for rule in definitions)
    fields = sorted({condition.field for rule in definitions for condition in rule.conditions})
    return rules_compile(definitions, sample=_products_sample(fields=fields) if needs_sample else ())


def _products_sample(*, fields: Sequence[str], size: int = 2000) -> list[dict]:
    """Return about `size` random products' fields, reading a fraction of the table's pages, not all of them."""
    total = Product.objects.count()
    if not total:
        return []
    # TABLESAMPLE SYSTEM picks whole pages: cheap on a million rows; ORDER BY random() would scan them all.
    percent = min(100.0, 100.0 * 4 * size / total)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Product._meta.get_field(name).column) for name in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {quote(Product._meta.db_table)} TABLESAMPLE SYSTEM (%s) LIMIT %s",
                       [percent, size])
        return [dict(zip(fields, row)) for row in cursor.fetchall()]


def _chunk_queries(*, product_ids: list[int] | None, chunk_size: int) -> Iterator[Callable[[int], QuerySet]]:
    """Yield, per chunk, a function of the last id seen that returns the chunk's products in id order."""
    if product_ids is not None:
        for start in range(0, len(product_ids), chunk_size):
            chunk = product_ids[start:start + chunk_size]
            yield lambda last_id, chunk=chunk: Product.objects.filter(id__in=chunk).order_by("id")
        return
    while True:
        yield lambda last_id: Product.objects.filter(id__gt=last_id).order_by("id")[:chunk_size]


def rules_apply(*, product_ids: Iterable[int] | None = None, chunk_size: int = 5000,
                progress: Callable[[int, int], None] | None = None) -> RulesApplyResult:
    """Evaluate every active rule on the products (all, or `product_ids`) and store what fired as RuleLabels.

    Products stream in id order, `chunk_size` at a time. Each chunk is one transaction that replaces the
    chunk's RuleLabels with the new set (labels of rules that no longer fire, were switched off or now name
    another category are deleted; new ones are inserted), so a re-run is idempotent and a crash leaves every
    chunk either before or after. Concurrent runs take turns per chunk on an advisory lock.

    Effective category: each chunk's products are recomputed from their sources
    (`products_category_refresh`): rules that name exactly one category beat the feed's; labels and the active
    model beat the rules. `progress(done, total)` is called after each chunk. Rules are read once, at the start.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    product_ids = sorted(set(product_ids)) if product_ids is not None else None
    result = RulesApplyResult()
    matcher = _rules_matcher_build(result)
    fields = sorted(matcher.fields)
    total = len(product_ids) if product_ids is not None else Product.objects.count()
    last_id = 0
    for chunk_query in _chunk_queries(product_ids=product_ids, chunk_size=chunk_size):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_APPLY_LOCK_KEY])
            rows = list(chunk_query(last_id).values("id", *fields))
            if not rows:
                if product_ids is None:
                    break
                continue
            last_id = rows[-1]["id"]
            matches = {row["id"]: matcher.match(row) for row in rows}
            _chunk_labels_replace(matches=matches, result=result)
            _chunk_categories_update(product_ids=list(matches), result=result)
        result.products_scanned += len(rows)
        result.products_labelled += sum(1 for hits in matches.values() if hits)
        if progress is not None:
            progress(result.products_scanned, total)
    # The rules' labels changed: re-measure every source and re-decide the catalogue with the new estimates.
    trust_and_categories_refresh()
    return result


def _chunk_labels_replace(*, matches: dict[int, set[tuple[int, int]]], result: RulesApplyResult) -> None:
    wanted = {(product_id, rule_id, category_id)
              for product_id, hits in matches.items() for rule_id, category_id in hits}
    existing = RuleLabel.objects.filter(product_id__in=list(matches)).values_list(
        "id", "product_id", "rule_id", "category_id")
    stale, kept = [], set()
    for label_id, product_id, rule_id, category_id in existing:
        key = (product_id, rule_id, category_id)
        if key in wanted:
            kept.add(key)
        else:
            stale.append(label_id)
    if stale:
        result.labels_removed += RuleLabel.objects.filter(id__in=stale).delete()[0]
    new = wanted - kept
    if new:
        result.labels_created += _rule_labels_insert(rows=new)


def _rule_labels_insert(*, rows: Iterable[tuple[int, int, int]]) -> int:
    """Insert (product_id, rule_id, category_id) rule labels in one statement; return how many were new.

    Raw SQL because bulk_create builds a model instance per row, which costs more than the INSERT at a
    million products; ON CONFLICT DO NOTHING is bulk_create's ignore_conflicts, and its row count is exact.
    """
    quote = connection.ops.quote_name
    field = RuleLabel._meta.get_field
    product_ids, rule_ids, category_ids = (list(column) for column in zip(*rows))
    columns = ", ".join(quote(field(name).column) for name in ("product", "rule", "category", "created_at"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(RuleLabel._meta.db_table)} ({columns}) "
            f"SELECT v.product_id, v.rule_id, v.category_id, %s "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(product_id, rule_id, category_id) "
            f"ON CONFLICT DO NOTHING",
            [timezone.now(), product_ids, rule_ids, category_ids])
        return cursor.rowcount


def _chunk_categories_update(*, product_ids: list[int], result: RulesApplyResult) -> None:
    """Recompute the chunk's effective categories from their new rule labels and count what moved."""
    for change in products_category_refresh(product_ids=product_ids):
        if change.new_source == CategorySource.RULE:
            result.categories_set += 1
        elif change.old_source == CategorySource.RULE:
            result.categories_reverted += 1

def rule_labels_for_product(*, product_id: int) -> QuerySet[RuleLabel]:
    """Return a product's rule labels with their rule and category: the trace of the legacy categoriser."""
    return RuleLabel.objects.filter(product_id=product_id).select_related("rule", "category").order_by(
        "category__full_path", "rule__name")
