"""manage.py propose_taxonomy FEED — propose a category tree from a feed's own category paths, and apply it."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelapp.catalogue.management.importing import import_run_execute_reported
from labelapp.catalogue.services.imports.files import ImportFileError
from labelapp.catalogue.services.imports.mapping import mapping_load
from labelapp.catalogue.services.taxonomy_proposals import (
    FEED_FORMATS,
    FeedPaths,
    feed_paths_read,
    proposal_options_for_catalogue,
    source_paths_read,
    taxonomy_proposal_run_create,
    taxonomy_proposal_write,
)
from labelapp.catalogue.taxonomy_proposal import (
    FOLD_CHOICES,
    FOLD_OTHER,
    exclusive_rule_parse,
    proposal_summary_lines,
    taxonomy_propose,
)


def _exclusive_level(text: str) -> int | None:
    try:
        return exclusive_rule_parse(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = ("Propose a taxonomy from a feed's category paths (cut to a depth, small nodes folded into their parent, "
            "exclusive leaves), print a summary, write it as the CSV import_taxonomy reads, and with --apply import "
            "it. Read the feed with the product import's readers, or use the paths of an imported source.")

    def add_arguments(self, parser):
        parser.add_argument("feed", type=Path, nargs="?", help="a product feed (CSV or JSON lines)")
        parser.add_argument("--from-source", metavar="SOURCE",
                            help="use the feed paths of the products already imported from SOURCE instead of a file")
        parser.add_argument("--mapping", type=Path, help="TOML mapping of the feed (see demo/mappings/)")
        parser.add_argument("--format", choices=FEED_FORMATS, help="default: the mapping's, else from the extension")
        parser.add_argument("--path-field", default="", metavar="NAME",
                            help="the field holding the category path (default: the mapping's category fields)")
        parser.add_argument("--depth", type=int, default=3, help="levels kept, 0 for all (default 3)")
        parser.add_argument("--min-products", type=int, default=5,
                            help="a node with fewer products is folded into its parent (default 5)")
        parser.add_argument("--exclusive", default="leaves", metavar="leaves|level:N",
                            help="which nodes are exclusive: the leaves (default) or the nodes at level N")
        parser.add_argument("--fold", choices=FOLD_CHOICES, default=FOLD_OTHER,
                            help="where products left on a node with children go: an 'Other' leaf when there are "
                                 "at least --min-products of them (default), or the node itself")
        parser.add_argument("--strip-leading", action="append", default=[], metavar="NAME",
                            help="a breadcrumb name removed from the start of paths (e.g. Home); repeatable")
        parser.add_argument("--out", type=Path, help="write the proposed taxonomy here (CSV: path,exclusive)")
        parser.add_argument("--apply", action="store_true", help="import the proposed taxonomy into the category tree")
        parser.add_argument("--show", type=int, default=20, help="changes (merges, folds, drops) to print (default 20)")

    def handle(self, *args, feed: Path | None, from_source: str | None, mapping: Path | None, format: str | None,
               path_field: str, depth: int, min_products: int, exclusive: str, fold: str, strip_leading: list[str],
               out: Path | None, apply: bool, show: int, **options):
        if (feed is None) == (from_source is None):
            raise CommandError("give a feed file or --from-source SOURCE (one of them)")
        try:
            proposal_options = proposal_options_for_catalogue(
                depth=depth or None, min_products=min_products, exclusive_level=_exclusive_level(exclusive),
                fold=fold, strip_leading=tuple(strip_leading))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        paths = self._paths_read(feed=feed, from_source=from_source, mapping=mapping, file_format=format,
                                 path_field=path_field)
        proposal = taxonomy_propose(path_counts=paths.path_counts, options=proposal_options)
        self.stdout.write("\n".join(proposal_summary_lines(proposal, changes_limit=show)))
        if out is not None:
            taxonomy_proposal_write(proposal=proposal, path=out)
            self.stdout.write(f"Wrote {len(proposal.nodes):,} categories to {out}")
        if apply:
            try:
                run = taxonomy_proposal_run_create(proposal=proposal, feed_name=paths.name, csv_path=out)
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            import_run_execute_reported(command=self, import_run=run, description="import the proposed taxonomy",
                                        show_issues=show)
        elif out is None:
            self.stdout.write("Nothing written: give --out FILE to keep the proposal, --apply to import it.")

    def _paths_read(self, *, feed: Path | None, from_source: str | None, mapping: Path | None,
                    file_format: str | None, path_field: str) -> FeedPaths:
        if from_source is not None:
            if mapping or file_format or path_field:
                raise CommandError("--mapping, --format and --path-field read a feed file, not --from-source")
            paths = source_paths_read(source=from_source)
            if not paths.rows_read:
                raise CommandError(f"no products from source {from_source!r}")
        else:
            try:
                import_mapping = mapping_load(path=mapping) if mapping else None
                paths = feed_paths_read(path=feed, file_format=file_format, mapping=import_mapping,
                                        path_field=path_field)
            except (ValueError, ImportFileError) as exc:
                raise CommandError(str(exc)) from exc
        with_path = paths.products - paths.path_counts.get((), 0)
        self.stdout.write(f"Read {paths.name}: {paths.rows_read:,} rows, {paths.rows_rejected:,} rejected, "
                          f"{paths.duplicate_ids:,} repeated ids; {paths.products:,} products, {with_path:,} with "
                          "a category path")
        if paths.products and not with_path:
            raise CommandError("no product has a category path: name its field with --path-field or a mapping")
        return paths
