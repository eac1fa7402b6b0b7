"""Evaluate every active legacy rule on the catalogue and store what fired as rule labels."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from tqdm import tqdm

from labelapp.catalogue.services.rules import rules_apply


class Command(BaseCommand):
    help = ("Apply the active legacy rules to every product: rule labels are replaced chunk by chunk (idempotent), "
            "and products without a human label or prediction take their category from the rules when those "
            "name exactly one category.")

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=5000, help="Products per transaction (5000).")

    def handle(self, *args, chunk_size: int, **options):
        with tqdm(unit="products", desc="apply rules", disable=options["verbosity"] < 1) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = rules_apply(chunk_size=chunk_size, progress=progress)
        self.stdout.write(self.style.SUCCESS(
            f"Applied {result.rules_active - result.rules_skipped} rules to {result.products_scanned} products: "
            f"{result.labels_created} labels created, {result.labels_removed} removed; "
            f"{result.products_labelled} products have a rule label; effective category set on "
            f"{result.categories_set}, reverted to the feed on {result.categories_reverted}."))
        if result.rules_skipped:
            self.stdout.write(self.style.WARNING(
                f"{result.rules_skipped} active rules could not be compiled and were skipped (see the log)."))
