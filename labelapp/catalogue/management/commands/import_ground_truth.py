"""Import ground-truth labels from feeds whose category is known to be right."""
from django.core.management.base import BaseCommand, CommandError

from labelapp.catalogue.models import Split
from labelapp.catalogue.services.ground_truth import labels_import_from_feed


class Command(BaseCommand):
    help = ("Label products with their feed category where it is an exclusive category (strategy 'import'), e.g. "
            "the test split of a trusted catalogue as the classifier's hand-labelled ground truth.")

    def add_arguments(self, parser):
        parser.add_argument("--from-feed", action="store_true", required=True,
                            help="take the label from the product's feed category")
        parser.add_argument("--source", help="only products of this source")
        parser.add_argument("--split", choices=Split.values, help="only products of this split")
        parser.add_argument("--limit", type=int, help="label at most this many (a fixed pseudo-random sample)")

    def handle(self, *args, **options):
        if not options["from_feed"]:
            raise CommandError("say where the ground truth comes from: --from-feed")
        if options["limit"] is not None and options["limit"] < 0:
            raise CommandError("--limit must be positive")
        result = labels_import_from_feed(source=options["source"], split=options["split"], limit=options["limit"])
        self.stdout.write(f"Labelled {result.labelled:,} products from their feed category; "
                          f"{result.already_labelled:,} already had a label; {result.not_exclusive:,} have no "
                          f"exclusive feed category.")
