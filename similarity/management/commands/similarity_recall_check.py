"""Measure how well the HNSW index answers similarity queries, against exact search."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from similarity.models import EmbeddingKind, Scope
from similarity.selectors.evaluation import embedding_recall_measure


def _csv(value: str, *, cast=str) -> tuple:
    try:
        return tuple(cast(item.strip()) for item in value.split(",") if item.strip())
    except ValueError as exc:
        raise CommandError(f"cannot read {value!r}: {exc}") from None


class Command(BaseCommand):
    help = ("Sample query products, compare the index's neighbours with an exact scan, and print recall@k per "
            "scope: 'hnsw' is the graph walk alone, 'auto' what queries get (small scopes are scanned exactly).")

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=int, default=200, help="Query products sampled (200).")
        parser.add_argument("--k", default="10,100", help="Comma-separated k values (10,100).")
        parser.add_argument("--scopes", default="level2,level3,global", help="Comma-separated scopes.")
        parser.add_argument("--modality", choices=[EmbeddingKind.IMAGE, EmbeddingKind.TEXT], default="image")
        parser.add_argument("--model-version", default=None, help="Defaults to the active one.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options):
        ks = _csv(options["k"], cast=int)
        scopes = _csv(options["scopes"])
        unknown = [scope for scope in scopes if scope not in Scope.values]
        if unknown or not scopes:
            raise CommandError(f"unknown scopes {unknown}; use {', '.join(Scope.values)}")
        if not ks or any(not 1 <= k <= 1000 for k in ks):
            raise CommandError("k values must be from 1 to 1000")
        rows = embedding_recall_measure(queries=options["queries"], ks=ks, scopes=scopes, kind=options["modality"],
                                        model_version=options["model_version"], seed=options["seed"])
        self.stdout.write(f"{'scope':8} {'k':>4} {'queries':>7} {'ef_search':>9} {'recall hnsw':>11} "
                          f"{'recall auto':>11} {'auto exact':>10} {'hnsw ms':>8} {'exact ms':>8}")
        for row in rows:
            self.stdout.write(
                f"{row.scope:8} {row.k:>4} {row.queries:>7} {row.ef_search:>9} {row.recall_hnsw:>11.3f} "
                f"{row.recall_auto:>11.3f} {row.auto_exact_share:>10.0%} {row.hnsw_ms_median:>8.1f} "
                f"{row.exact_ms_median:>8.1f}")
        if any(row.queries == 0 for row in rows):
            self.stdout.write(self.style.WARNING("Some scopes had no query with a category at that level."))
