"""Reads of the catalogue, the taxonomy, labels, imports, labelling rounds and their queue."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from labelapp.models import (Category, ImportRun, Label, LabellingRound, LegacyRule, Product, QueueItem,
                             QueueItemStatus, RoundStatus, RuleLabel)


@dataclass(frozen=True)
class ProductFilters:
    """What a product listing may be narrowed by; every field is optional."""

    q: str = ""
    category_id: int | None = None
    source: str = ""
    labelled: bool | None = None
    split: str = ""
    has_image: bool | None = None


def product_list(*, filters: ProductFilters | None = None) -> QuerySet[Product]:
    """Return products matching the filters, newest id last; `category_id` selects its whole subtree."""
    filters = filters or ProductFilters()
    qs = Product.objects.select_related("category").annotate(
        is_labelled=Exists(Label.objects.filter(product=OuterRef("pk")))
    )
    if filters.q:
        qs = qs.filter(Q(title__icontains=filters.q) | Q(external_id=filters.q) | Q(brand__iexact=filters.q))
    if filters.category_id is not None:
        qs = qs.filter(category__lineage__contains=[filters.category_id])
    if filters.source:
        qs = qs.filter(source=filters.source)
    if filters.labelled is not None:
        qs = qs.filter(is_labelled=filters.labelled)
    if filters.split:
        qs = qs.filter(split=filters.split)
    if filters.has_image is not None:
        qs = qs.exclude(image="") if filters.has_image else qs.filter(image="")
    return qs.order_by("id")


def product_sources() -> list[str]:
    """Return the distinct sources in the catalogue."""
    return list(Product.objects.order_by("source").values_list("source", flat=True).distinct())


def product_detail(*, product_id: int) -> Product:
    """Return one product with its labels (newest first) and rule labels (with the rule that fired)."""
    return (
        Product.objects.select_related("category", "feed_category", "level2", "level3")
        .prefetch_related(
            Prefetch("labels", queryset=Label.objects.select_related("category", "labeller")),
            Prefetch("rule_labels", queryset=RuleLabel.objects.select_related("category", "rule")),
        )
        .get(pk=product_id)
    )


def label_current(*, product: Product) -> Label | None:
    """Return the product's current human label: the newest row not undone (labels are append-only)."""
    return product.labels.filter(undone=False).order_by("-created_at", "-id").first()


def label_list(*, product_id: int | None = None, labeller_id: int | None = None, strategy: str = "",
               current_only: bool = False) -> QuerySet[Label]:
    """Return labels, newest first; `current_only` keeps each product's newest label that is not undone."""
    qs = Label.objects.select_related("product", "category", "labeller")
    if product_id is not None:
        qs = qs.filter(product_id=product_id)
    if labeller_id is not None:
        qs = qs.filter(labeller_id=labeller_id)
    if strategy:
        qs = qs.filter(strategy=strategy)
    if current_only:
        qs = qs.filter(undone=False)
        newer = Label.objects.filter(product_id=OuterRef("product_id"), undone=False).filter(
            Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
        )
        qs = qs.filter(~Exists(newer))
    return qs.order_by("-created_at", "-id")


def category_list(*, q: str = "", exclusive: bool | None = None, parent_id: int | None = None,
                  roots_only: bool = False, depth: int | None = None) -> QuerySet[Category]:
    """Return categories in path order."""
    qs = Category.objects.all()
    if q:
        qs = qs.filter(full_path__icontains=q)
    if exclusive is not None:
        qs = qs.filter(is_exclusive=exclusive)
    if roots_only:
        qs = qs.filter(parent__isnull=True)
    elif parent_id is not None:
        qs = qs.filter(parent_id=parent_id)
    if depth is not None:
        qs = qs.filter(depth=depth)
    return qs.order_by("full_path")


def category_children_with_counts(*, parent_id: int | None) -> QuerySet[Category]:
    """Return a node's children (roots when None) with their child and direct-product counts."""
    qs = Category.objects.filter(parent_id=parent_id) if parent_id else Category.objects.filter(parent__isnull=True)
    return qs.annotate(n_children=Count("children", distinct=True)).order_by("name")


def category_subtree_product_count(*, category: Category) -> int:
    """Return how many products sit anywhere in the node's subtree."""
    return Product.objects.filter(category__lineage__contains=[category.id]).count()


def category_tree() -> list[dict]:
    """Return the whole tree as nested dicts (id, name, external_id, is_exclusive, children) in one query."""
    nodes: dict[int, dict] = {}
    roots: list[dict] = []
    for row in Category.objects.order_by("depth", "name").values(
        "id", "name", "external_id", "parent_id", "depth", "is_exclusive", "is_leaf"
    ):
        node = {**row, "children": []}
        nodes[row["id"]] = node
        parent = nodes.get(row["parent_id"])
        (parent["children"] if parent else roots).append(node)
    for node in nodes.values():
        node.pop("parent_id")
    return roots


def rule_label_list(*, product_id: int | None = None, category_id: int | None = None,
                    rule_id: int | None = None) -> QuerySet[RuleLabel]:
    """Return rule labels with their category and rule."""
    qs = RuleLabel.objects.select_related("category", "rule", "product")
    if product_id is not None:
        qs = qs.filter(product_id=product_id)
    if category_id is not None:
        qs = qs.filter(category_id=category_id)
    if rule_id is not None:
        qs = qs.filter(rule_id=rule_id)
    return qs.order_by("product_id", "category_id")


def rule_list(*, active: bool | None = None) -> QuerySet[LegacyRule]:
    """Return legacy rules with their category and how many products each labels."""
    qs = LegacyRule.objects.select_related("category").annotate(n_labels=Count("rule_labels"))
    if active is not None:
        qs = qs.filter(active=active)
    return qs.order_by("name")


def import_run_list() -> QuerySet[ImportRun]:
    """Return import runs, newest first."""
    return ImportRun.objects.select_related("created_by").order_by("-created_at")


def catalogue_counts() -> dict[str, int]:
    """Return the headline counts shown on the dashboard."""
    return {
        "products": Product.objects.count(),
        "with_image": Product.objects.exclude(image="").count(),
        "categories": Category.objects.count(),
        "exclusive_categories": Category.objects.filter(is_exclusive=True).count(),
        "labels": Label.objects.count(),
        "labelled_products": Label.objects.values("product_id").distinct().count(),
        "rules": LegacyRule.objects.filter(active=True).count(),
        "rule_labels": RuleLabel.objects.count(),
    }


# --- labelling rounds and the queue ----------------------------------------------------------------------------


def labelling_round_open() -> LabellingRound | None:
    """Return the open labelling round, if any (at most one is open)."""
    return LabellingRound.objects.filter(status=RoundStatus.OPEN).first()


def labelling_round_list() -> QuerySet[LabellingRound]:
    """Return labelling rounds, newest first, with their train run and model version."""
    return LabellingRound.objects.select_related("train_run", "model_version", "created_by").order_by("-number")


@dataclass(frozen=True)
class StrategyProgress:
    strategy: str
    total: int
    done: int
    flagged: int


@dataclass(frozen=True)
class RoundProgress:
    """Where a round stands: items by status, labels per strategy, and its retraining run (when closing)."""

    round: LabellingRound
    total: int
    pending: int
    leased: int
    done: int
    flagged: int
    strategies: tuple[StrategyProgress, ...]

    @property
    def percent_done(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def train_run(self):
        return self.round.train_run


def labelling_round_progress(*, round: LabellingRound) -> RoundProgress:
    """Return the round's progress in one query (items whose lease expired count as pending)."""
    now = timezone.now()
    rows = (QueueItem.objects.filter(round=round).values("strategy")
            .annotate(total=Count("id"), done=Count("id", filter=Q(status=QueueItemStatus.DONE)),
                      leased=Count("id", filter=Q(status=QueueItemStatus.LEASED, lease_expires_at__gt=now)),
                      flagged=Count("id", filter=Q(flagged=True)))
            .order_by("strategy"))
    strategies = tuple(StrategyProgress(strategy=row["strategy"], total=row["total"], done=row["done"],
                                        flagged=row["flagged"]) for row in rows)
    total = sum(row["total"] for row in rows)
    done = sum(row["done"] for row in rows)
    leased = sum(row["leased"] for row in rows)
    return RoundProgress(round=round, total=total, done=done, leased=leased, pending=total - done - leased,
                         flagged=sum(row["flagged"] for row in rows), strategies=strategies)


def labelling_round_counts(*, round: LabellingRound, user) -> dict[str, int]:
    """Return the labeller's header counts in one query: items, items done, and this user's labels in the round.

    The item total comes from the fill's record when it has one.
    """
    items, labels = QueueItem._meta.db_table, Label._meta.db_table
    total = (round.options or {}).get("fill", {}).get("items")
    total_sql = "%s" if total is not None else f"(SELECT count(*) FROM {items} WHERE round_id = %s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT count(*) FROM {items} WHERE round_id = %s AND status = %s),
                       (SELECT count(*) FROM {labels} WHERE round_id = %s AND labeller_id = %s AND NOT undone),
                       {total_sql}""",
            [round.pk, QueueItemStatus.DONE, round.pk, user.pk, total if total is not None else round.pk])
        done, mine, total = cursor.fetchone()
    return {"total": int(total), "done": done, "mine": mine}


@dataclass(frozen=True)
class Suggestion:
    key: int
    category_id: int
    path: str
    probability: float


@dataclass(frozen=True)
class QueueCard:
    """What a labeller sees of one queue item: the product, its rule labels and the model's suggestions."""

    item: QueueItem
    product: Product
    rule_paths: tuple[str, ...]
    suggestions: tuple[Suggestion, ...]
    token: str


SUGGESTIONS = 5


def queue_item_token(item: QueueItem) -> str:
    """Return the idempotency token a card is submitted with: the item id and the label it was shown after."""
    return f"{item.pk}.{item.label_id or 0}"


def queue_cards(*, items: list[QueueItem], model_version_id: int | None) -> list[QueueCard]:
    """Return the cards of queue items (with product loaded): rule-label paths and suggestions in one query.

    Suggestions are the top-5 exclusive classes of `model_version_id`'s prediction for the product (none
    without a model: a cold start shows the type-ahead only). One round trip, because the labelling page
    pays for every one of them on each product.
    """
    from classifier.models import Prediction

    product_ids = [item.product_id for item in items]
    rule_paths: dict[int, list[str]] = {}
    suggestions: dict[int, list[Suggestion]] = {}
    if product_ids:
        category, rule_label = Category._meta.db_table, RuleLabel._meta.db_table
        # top_k is [[category id, probability], …] best first: unnest its first five and join their paths.
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT DISTINCT 'rule', r.product_id, c.id, c.full_path, NULL::float8, 0::bigint
                    FROM {rule_label} AS r JOIN {category} AS c ON c.id = r.category_id
                    WHERE r.product_id = ANY(%s)
                    UNION ALL
                    SELECT 'model', p.product_id, c.id, c.full_path, (t.entry ->> 1)::float8, t.rank
                    FROM {Prediction._meta.db_table} AS p
                    CROSS JOIN LATERAL jsonb_array_elements(p.top_k) WITH ORDINALITY AS t(entry, rank)
                    JOIN {category} AS c ON c.id = (t.entry ->> 0)::bigint AND c.is_exclusive
                    WHERE p.model_version_id = %s AND p.product_id = ANY(%s) AND t.rank <= %s
                    ORDER BY 1, 2, 6, 4""",
                [product_ids, model_version_id, product_ids, SUGGESTIONS])
            for kind, product_id, category_id, path, probability, _ in cursor.fetchall():
                if kind == "rule":
                    rule_paths.setdefault(product_id, []).append(path)
                else:
                    found = suggestions.setdefault(product_id, [])
                    found.append(Suggestion(key=len(found) + 1, category_id=category_id, path=path,
                                            probability=probability or 0.0))
    return [QueueCard(item=item, product=item.product, rule_paths=tuple(rule_paths.get(item.product_id, ())),
                      suggestions=tuple(suggestions.get(item.product_id, ())), token=queue_item_token(item))
            for item in items]


def category_exclusive_paths() -> list[tuple[int, str]]:
    """Return (id, full path) of every exclusive category in path order: the labelling type-ahead's list."""
    return list(Category.objects.filter(is_exclusive=True).order_by("full_path").values_list("id", "full_path"))
