"""A product's effective category: the one place that computes and writes it.

`Product.category`, `category_source`, `level2` and `level3` are written here and nowhere else. Every write
path — a label or its undo, an import, a rule run, imported ground truth, a model's promotion or rollback —
records its own source (a Label, RuleLabels, the feed category, the model's category on the product) and then
calls `products_category_refresh`, which recomputes the category from all sources in one statement.

Precedence, strongest first: the newest human label that is not undone and names a category (a "none fits"
label leaves the category to the weaker sources) > the active model's category > the legacy rules when they
name exactly one category > the feed's category > none.

Every product whose category changes is marked `category_dirty` in the same statement, so copies of the
category held elsewhere (the similarity vectors' level-2/level-3 columns) can never be forgotten: after
commit the CATEGORIES_CHANGED event prompts the similarity app to re-sync them, and its periodic sweep
catches anything a crash left behind (`products_category_dirty_claim`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection, transaction

from labelapp.catalogue.models import (
    Category,
    CategorySource,
    Label,
    LabelStrategy,
    Product,
    RuleLabel,
    SourceTrust,
    Split,
    TrustKind,
)
from labelapp.common.events import CATEGORIES_CHANGED, event_publish

REFRESH_CHUNK = 20_000


@dataclass(frozen=True)
class CategoryChange:
    product_id: int
    old_source: str
    new_source: str
    category_id: int | None
    level2_id: int | None
    level3_id: int | None


def arbitration_sql(*, every: bool, labels: bool = True, feed: bool = True, model_table: str = "",  # long: one SQL statement
                    feed_hidden_where_imported: bool = False) -> str:
    """Return SQL (WITH … ) ending in a `decided` CTE: (id, old_source, category_id, source, precision, rule_id).

    `every`: all products, else those in %(ids)s. `labels=False` decides as if no product had a human label
    (what the catalogue shows without them: the catalogue accuracy). `feed=False` leaves the feed out;
    `feed_hidden_where_imported` leaves it out for products whose label was imported from the feed (there
    the feed is the answer). `model_table` names a table (product_id, category_id, precision) to take the
    model's categories from instead of the products' own columns (a candidate version, before promotion).
    Parameters: %(ids)s when not `every`, and the source names of SOURCE_PARAMS.
    """
    product, label, rule_label, trust = (model._meta.db_table for model in (Product, Label, RuleLabel, SourceTrust))
    where = "" if every else "WHERE p.id = ANY(%(ids)s)"
    feed_column = (f"""CASE WHEN EXISTS (SELECT 1 FROM {label} AS li WHERE li.product_id = p.id AND NOT li.undone
                                         AND li.strategy = %(imported)s) THEN NULL ELSE p.feed_category_id END
                       AS feed_category_id""" if feed_hidden_where_imported else "p.feed_category_id")
    model_join = (f"LEFT JOIN {model_table} AS m ON m.product_id = p.id" if model_table else "")
    model_columns = ("m.category_id AS model_category_id, m.precision AS model_precision" if model_table
                     else "p.model_category_id, p.model_precision")
    labelled = f"""
            SELECT DISTINCT ON (l.product_id) l.product_id, l.category_id
            FROM {label} AS l JOIN target AS t ON t.id = l.product_id
            WHERE NOT l.undone AND l.category_id IS NOT NULL
            ORDER BY l.product_id, l.created_at DESC, l.id DESC""" if labels else """
            SELECT NULL::bigint AS product_id, NULL::bigint AS category_id WHERE false"""
    feed_candidates = f"""
            SELECT t.id AS product_id, t.feed_category_id AS category_id,
                   COALESCE(fc.precision, fs.precision) AS precision, %(feed)s AS source, 2 AS rank,
                   NULL::bigint AS rule_id
            FROM target AS t
            LEFT JOIN {trust} AS fc ON fc.kind = %(trust_feed)s AND fc.source = t.source
                                    AND fc.category_id = t.feed_category_id
            LEFT JOIN {trust} AS fs ON fs.kind = %(trust_feed_source)s AND fs.source = t.source
            WHERE t.feed_category_id IS NOT NULL""" if feed else """
            SELECT NULL::bigint, NULL::bigint, NULL::float8, NULL::varchar, 2, NULL::bigint WHERE false"""
    return f"""
        WITH target AS (
            SELECT p.id, p.category_source AS old_source, p.source, {feed_column}, {model_columns}
            FROM {product} AS p {model_join} {where}
        ),
        labelled AS ({labelled}
        ),
        rule_categories AS (
            SELECT r.product_id, r.category_id, max(s.precision) AS precision,
                   (array_agg(r.rule_id ORDER BY s.precision DESC NULLS LAST, r.rule_id))[1] AS rule_id
            FROM {rule_label} AS r JOIN target AS t ON t.id = r.product_id
            LEFT JOIN {trust} AS s ON s.kind = %(trust_rule)s AND s.rule_id = r.rule_id
            GROUP BY r.product_id, r.category_id
        ),
        rule_best AS (
            SELECT DISTINCT ON (product_id) product_id, category_id, precision, rule_id,
                   count(*) OVER (PARTITION BY product_id) AS categories
            FROM rule_categories ORDER BY product_id, precision DESC NULLS LAST, category_id
        ),
        legacy AS (
            -- The legacy sources' best candidate: the most precise measured one; unmeasured, the rules when
            -- they name exactly one category, then the feed (the order before anything was measured).
            SELECT DISTINCT ON (product_id) product_id, category_id, precision, source, rule_id
            FROM (
                SELECT product_id, category_id, precision, %(rule)s AS source, 1 AS rank, rule_id FROM rule_best
                WHERE precision IS NOT NULL OR categories = 1
                UNION ALL {feed_candidates}
            ) AS candidates
            ORDER BY product_id, precision DESC NULLS LAST, rank
        ),
        decided AS (
            SELECT t.id, t.old_source,
                   CASE WHEN l.category_id IS NOT NULL THEN l.category_id
                        WHEN model_wins THEN t.model_category_id
                        ELSE g.category_id END AS category_id,
                   CASE WHEN l.category_id IS NOT NULL THEN %(label)s
                        WHEN model_wins THEN %(prediction)s
                        WHEN g.product_id IS NOT NULL THEN g.source
                        ELSE %(none)s END AS source,
                   CASE WHEN l.category_id IS NOT NULL THEN NULL
                        WHEN model_wins THEN t.model_precision
                        ELSE g.precision END AS precision,
                   CASE WHEN l.category_id IS NULL AND NOT model_wins THEN g.rule_id END AS rule_id
            FROM target AS t
            LEFT JOIN labelled AS l ON l.product_id = t.id
            LEFT JOIN legacy AS g ON g.product_id = t.id
            -- The model replaces a legacy source only when both are measured and the model is more precise;
            -- where no legacy source names a category, it fills the gap.
            CROSS JOIN LATERAL (SELECT t.model_category_id IS NOT NULL AND (
                g.product_id IS NULL OR (t.model_precision IS NOT NULL AND g.precision IS NOT NULL
                                         AND t.model_precision > g.precision)) AS model_wins) AS w
        )"""


SOURCE_PARAMS = {"label": CategorySource.LABEL.value, "prediction": CategorySource.PREDICTION.value,
                 "rule": CategorySource.RULE.value, "feed": CategorySource.FEED.value,
                 "none": CategorySource.NONE.value, "trust_rule": TrustKind.RULE.value,
                 "trust_feed": TrustKind.FEED.value, "trust_feed_source": TrustKind.FEED_SOURCE.value,
                 "imported": LabelStrategy.IMPORT.value}


def _refresh_sql(*, every: bool) -> str:
    product, category = Product._meta.db_table, Category._meta.db_table
    return arbitration_sql(every=every) + f"""
        UPDATE {product} AS p
        SET category_id = d.category_id, category_source = d.source, category_precision = d.precision,
            category_rule_id = d.rule_id, level2_id = c.level2_id, level3_id = c.level3_id,
            category_dirty = p.category_dirty OR p.level2_id IS DISTINCT FROM c.level2_id
                             OR p.level3_id IS DISTINCT FROM c.level3_id,
            updated_at = now()
        FROM decided AS d LEFT JOIN {category} AS c ON c.id = d.category_id
        WHERE p.id = d.id
          AND (p.category_id IS DISTINCT FROM d.category_id OR p.category_source <> d.source
               OR p.category_precision IS DISTINCT FROM d.precision OR p.category_rule_id IS DISTINCT FROM d.rule_id
               OR p.level2_id IS DISTINCT FROM c.level2_id OR p.level3_id IS DISTINCT FROM c.level3_id)
        RETURNING p.id, d.old_source, d.source, d.category_id, c.level2_id, c.level3_id"""


def products_category_refresh(*, product_ids: Iterable[int] | None = None) -> list[CategoryChange]:
    """Recompute the effective category of the products (all when None) from their sources; return the changes.

    Runs in the caller's transaction (its UPDATE locks the changed rows until commit) and publishes
    CATEGORIES_CHANGED for them after commit.
    """
    sources = SOURCE_PARAMS
    changes: list[CategoryChange] = []
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            if product_ids is None:
                cursor.execute(_refresh_sql(every=True), sources)
                changes += [CategoryChange(*row) for row in cursor.fetchall()]
            else:
                ids = sorted(set(product_ids))
                for start in range(0, len(ids), REFRESH_CHUNK):
                    cursor.execute(_refresh_sql(every=False), {**sources, "ids": ids[start:start + REFRESH_CHUNK]})
                    changes += [CategoryChange(*row) for row in cursor.fetchall()]
        if changes:
            event_publish(CATEGORIES_CHANGED, product_ids=[change.product_id for change in changes])
    return changes


def product_category_recompute(*, product: Product) -> None:
    """Recompute one product's effective category and update the instance to match."""
    for change in products_category_refresh(product_ids=[product.pk]):
        if product.category_id != change.category_id:
            product.category_id = change.category_id  # also drops a cached `product.category`
        product.category_source = change.new_source
        product.level2_id, product.level3_id = change.level2_id, change.level3_id


def products_model_categories_replace(*, product_ids: Sequence[int], category_ids: Sequence[int | None],
                                      confidences: Sequence[float | None],
                                      precisions: Sequence[float | None] | None = None,
                                      refresh_all: bool = False) -> list[CategoryChange]:
    """Make these the active model's categories (others get none) and refresh the affected products.

    Called when a model version becomes active (promotion or rollback), with its top-1 prediction per product:
    the calibrated confidence, and the estimated precision where the model's calibration was measured on enough
    human labels (None: unmeasured). Empty sequences mean "no active model". Returns the category changes of
    the products whose model category changed, or of every product with `refresh_all` (new trust estimates).
    """
    precisions = list(precisions) if precisions is not None else [None] * len(product_ids)
    product = Product._meta.db_table
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute("""CREATE TEMPORARY TABLE model_category_incoming (
                                  product_id bigint PRIMARY KEY, category_id bigint, confidence float8,
                                  precision float8) ON COMMIT DROP""")
            for start in range(0, len(product_ids), REFRESH_CHUNK):
                end = start + REFRESH_CHUNK
                cursor.execute(
                    "INSERT INTO model_category_incoming SELECT * FROM unnest(%s::bigint[], %s::bigint[], "
                    "%s::float8[], %s::float8[])",
                    [list(product_ids[start:end]), list(category_ids[start:end]), list(confidences[start:end]),
                     precisions[start:end]])
            cursor.execute(
                f"""WITH wanted AS (
                        SELECT p.id, i.category_id, i.confidence, i.precision FROM {product} AS p
                        LEFT JOIN model_category_incoming AS i ON i.product_id = p.id
                        WHERE i.product_id IS NOT NULL OR p.model_category_id IS NOT NULL)
                    UPDATE {product} AS p
                    SET model_category_id = w.category_id, model_confidence = w.confidence,
                        model_precision = w.precision
                    FROM wanted AS w
                    WHERE p.id = w.id AND (p.model_category_id IS DISTINCT FROM w.category_id
                                           OR p.model_confidence IS DISTINCT FROM w.confidence
                                           OR p.model_precision IS DISTINCT FROM w.precision)
                    RETURNING p.id""")
            touched = [row[0] for row in cursor.fetchall()]
            cursor.execute("DROP TABLE model_category_incoming")
        return products_category_refresh(product_ids=None if refresh_all else touched)


def products_category_dirty_claim(*, limit: int = 10_000) -> list[tuple[int, int | None, int | None]]:
    """Claim up to `limit` products whose category copies are stale: clear their flag, return (id, level2, level3).

    For the holder of the copies, inside its own transaction: it writes the copies, then commits, so a crash
    leaves the flags set. Rows another transaction is changing are skipped (SKIP LOCKED): that transaction
    sets the flag again, and its own event or the next sweep takes them.
    """
    product = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH claimed AS (
                    SELECT id FROM {product} WHERE category_dirty ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
                UPDATE {product} AS p SET category_dirty = false FROM claimed
                WHERE p.id = claimed.id RETURNING p.id, p.level2_id, p.level3_id""", [limit])
        return cursor.fetchall()


@dataclass(frozen=True)
class CatalogueAccuracy:
    """How often the catalogue's category is right where a human knows the answer (test-split labels).

    Each labelled test product is decided as if it had no label: `decisions` maps its id to (decided category,
    winning source, right). The feed is left out where the label was imported from it.
    """

    labelled: int
    correct: int
    by_source: dict[str, tuple[int, int]]
    decisions: dict[int, tuple[int | None, str, bool]]
    truth: dict[int, int]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def catalogue_accuracy_measure(*, model_rows: Sequence[tuple[int, int | None, float | None]] | None = None
                               ) -> CatalogueAccuracy:
    """Measure the catalogue on the test split's labels; `model_rows` (product, category, precision) stand in
    for the active model's categories (a candidate version), else the products' own are used."""
    label, product = Label._meta.db_table, Product._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"""SELECT DISTINCT ON (l.product_id) l.product_id, l.category_id
                           FROM {label} AS l JOIN {product} AS p ON p.id = l.product_id AND p.split = %s
                           WHERE NOT l.undone AND l.category_id IS NOT NULL
                           ORDER BY l.product_id, l.created_at DESC, l.id DESC""", [Split.TEST.value])
        truth = dict(cursor.fetchall())
        model_table = ""
        if model_rows is not None:
            model_table = "model_category_candidate"
            cursor.execute(f"""CREATE TEMPORARY TABLE {model_table} (product_id bigint PRIMARY KEY, category_id bigint,
                               precision float8) ON COMMIT DROP""")
            rows = [row for row in model_rows if row[0] in truth]
            if rows:
                cursor.execute(f"INSERT INTO {model_table} SELECT * FROM unnest(%s::bigint[], %s::bigint[], "
                               f"%s::float8[])", [list(column) for column in zip(*rows)])
        cursor.execute(arbitration_sql(every=False, labels=False, model_table=model_table,
                                       feed_hidden_where_imported=True) + " SELECT id, category_id, source FROM decided",
                       {**SOURCE_PARAMS, "ids": list(truth)})
        decided = cursor.fetchall()
        if model_table:
            cursor.execute(f"DROP TABLE {model_table}")
    decisions = {pid: (category_id, source, category_id == truth[pid]) for pid, category_id, source in decided}
    by_source: dict[str, tuple[int, int]] = {}
    for _, source, right in decisions.values():
        seen, hits = by_source.get(source, (0, 0))
        by_source[source] = (seen + 1, hits + right)
    return CatalogueAccuracy(labelled=len(decisions), correct=sum(right for *_, right in decisions.values()),
                             by_source=by_source, decisions=decisions, truth=truth)
