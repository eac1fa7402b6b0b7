"""manage.py import_products FILE — stream a product feed (JSON lines or CSV) into the catalogue."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelapp.catalogue.management.importing import import_run_execute_reported
from labelapp.catalogue.models import ImportKind
from labelapp.catalogue.services.imports.mapping import ImportMapping, mapping_load
from labelapp.catalogue.services.imports.runs import import_run_create


class Command(BaseCommand):
    help = ("Import products from a JSON lines or CSV feed, upserting by (source, external id). "
            "Bad rows are reported, never fatal.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file's extension")
        parser.add_argument("--source", help="source name (default: the mapping's, else the file's stem)")
        parser.add_argument("--mapping", type=Path, help="TOML mapping of input fields (see demo/mappings/)")
        parser.add_argument("--images", type=Path, help="folder holding the product images")
        parser.add_argument("--batch-size", type=int, help="rows per upsert (default: IMPORT_BATCH_SIZE)")
        parser.add_argument("--no-image-urls", action="store_true", help="do not download http(s) image URLs")
        parser.add_argument("--show-issues", type=int, default=20, help="row issues to print (default 20)")

    def handle(self, *args, file: Path, format: str | None, source: str | None, mapping: Path | None,
               images: Path | None, batch_size: int | None, no_image_urls: bool, show_issues: int, **options):
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            import_mapping = mapping_load(path=mapping) if mapping else ImportMapping.default()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        source = source or import_mapping.source or file.name.split(".")[0]
        try:
            run = import_run_create(
                kind=ImportKind.PRODUCTS,
                file_name=str(file.resolve()),
                source=source,
                options={
                    "format": format,
                    "mapping": import_mapping.to_dict(),
                    "images_dir": str(images.resolve()) if images else None,
                    "batch_size": batch_size,
                    "fetch_image_urls": not no_image_urls,
                },
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        import_run_execute_reported(command=self, import_run=run, description=f"import {file.name}",
                                    show_issues=show_issues)
