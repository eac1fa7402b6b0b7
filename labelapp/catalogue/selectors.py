"""Reads of the catalogue, the taxonomy, labels, rules and imports."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from labelapp.catalogue.models import (
    Category,
    CategorySource,
    FeedCategoryMap,
    ImportRun,
    Label,
    LegacyRule,
    Product,
    RuleLabel,
    SourceTrust,
    TrustKind,
)


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


def category_exclusive_paths() -> list[tuple[int, str]]:
    """Return (id, full path) of every exclusive category in path order: the labelling type-ahead's list."""
    return list(Category.objects.filter(is_exclusive=True).order_by("full_path").values_list("id", "full_path"))


def category_full_paths_existing(*, full_paths: list[str]) -> set[str]:
    """Return which of these full paths already name a category."""
    found: set[str] = set()
    for start in range(0, len(full_paths), 1000):
        chunk = full_paths[start:start + 1000]
        found.update(Category.objects.filter(full_path__in=chunk).values_list("full_path", flat=True))
    return found


def product_category_path_counts(*, source: str) -> dict[str, int]:
    """Return each feed category path of a source's products (as imported, 'A > B > C') with its product count."""
    rows = (Product.objects.filter(source=source).values_list("category_path").annotate(n=Count("id"))
            .order_by("category_path"))
    return dict(rows)


@dataclass(frozen=True)
class CategoryEvidence:
    """Why a product's category is what it is: the source that won and the estimate behind it."""

    source: str
    source_label: str
    precision: float | None
    low: float | None = None
    high: float | None = None
    labelled: int | None = None
    rule: str = ""

    @property
    def summary(self) -> str:
        if self.source == CategorySource.LABEL:
            return "a human label"
        if self.precision is None:
            return f"{self.source_label}, precision not measured yet"
        interval = (f" (95 % interval {self.low:.2f}–{self.high:.2f}, {self.labelled} labelled products)"
                    if self.low is not None and self.labelled else "")
        return f"{self.source_label}, estimated precision {self.precision:.2f}{interval}"


def category_evidence(*, products: list[Product]) -> dict[int, CategoryEvidence]:
    """Return product id → the evidence behind its category, in at most two queries for any number of products."""
    rule_ids = {p.category_rule_id for p in products if p.category_source == CategorySource.RULE and p.category_rule_id}
    feed_keys = {(p.source, p.feed_category_id) for p in products if p.category_source == CategorySource.FEED}
    rows = SourceTrust.objects.filter(
        Q(kind=TrustKind.RULE, rule_id__in=rule_ids)
        | Q(kind__in=[TrustKind.FEED, TrustKind.FEED_SOURCE], source__in={source for source, _ in feed_keys})
    ).select_related("rule") if rule_ids or feed_keys else []
    rules = {row.rule_id: row for row in rows if row.kind == TrustKind.RULE}
    feeds = {(row.source, row.category_id): row for row in rows if row.kind == TrustKind.FEED}
    sources = {row.source: row for row in rows if row.kind == TrustKind.FEED_SOURCE}
    evidence = {}
    for product in products:
        label = CategorySource(product.category_source).label
        row = None
        if product.category_source == CategorySource.RULE:
            row = rules.get(product.category_rule_id)
            if row is not None:
                label = f"legacy rule “{row.rule.name}”"
        elif product.category_source == CategorySource.FEED:
            row = feeds.get((product.source, product.feed_category_id))
            if row is None or not row.labelled:
                row = sources.get(product.source, row)
            label = f"feed category of {product.source}"
        elif product.category_source == CategorySource.PREDICTION:
            label = "the active model's prediction"
        evidence[product.id] = CategoryEvidence(
            source=product.category_source, source_label=label, precision=product.category_precision,
            low=row.low if row else None, high=row.high if row else None, labelled=row.labelled if row else None,
            rule=row.rule.name if row is not None and row.rule_id else "")
    return evidence


def feed_path_counts(*, source: str, q: str = "", feed_paths: list[str] | None = None) -> list[tuple[str, int]]:
    """Return a source's distinct non-empty feed paths with their product counts, most products first."""
    qs = Product.objects.filter(source=source).exclude(category_path="")
    if q:
        qs = qs.filter(category_path__icontains=q)
    if feed_paths is not None:
        qs = qs.filter(category_path__in=feed_paths)
    return list(qs.order_by().values_list("category_path").annotate(n=Count("id")).order_by("-n", "category_path"))


def feed_category_map_get(*, source: str) -> FeedCategoryMap | None:
    """Return the source's feed category map (None: the source maps its paths exactly)."""
    return FeedCategoryMap.objects.filter(source=source).first()


def feed_category_source_list() -> list[dict]:
    """Return every source with its product counts (with a feed path, with a feed category, distinct paths) and
    its feed category mapping mode."""
    modes = {source: f"{mode} {levels}" if levels else mode
             for source, mode, levels in FeedCategoryMap.objects.values_list("source", "mode", "levels")}
    rows = (Product.objects.order_by().values("source").annotate(
        products=Count("id"), with_path=Count("id", filter=~Q(category_path="")),
        matched=Count("id", filter=Q(feed_category__isnull=False)),
        paths=Count("category_path", distinct=True, filter=~Q(category_path=""))).order_by("source"))
    return [{**row, "unmatched": row["with_path"] - row["matched"], "mapping": modes.get(row["source"], "exact")}
            for row in rows]
