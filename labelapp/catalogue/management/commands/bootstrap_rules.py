"""Create one keyword rule per exclusive category from its name."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labelapp.catalogue.models import RULE_FIELDS
from labelapp.catalogue.services.rules import rules_bootstrap


class Command(BaseCommand):
    help = ("Create or refresh one keyword rule per exclusive category, from its name: 'Trousers' → "
            "<field> contains_word 'trousers' OR 'trouser'. Rules are named bootstrap:<field>:<external id> "
            "(origin bootstrap); a re-run rewrites their keywords but keeps a rule someone switched off, off. "
            "Run apply_rules afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("--field", default="title", choices=RULE_FIELDS, help="The product field to match.")

    def handle(self, *args, field: str, **options):
        try:
            written = rules_bootstrap(field=field)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{written} bootstrap rules created or updated on {field}."))
