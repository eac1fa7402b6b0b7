"""manage.py import_taxonomy FILE — load a Google product taxonomy or a CSV of paths into the category tree."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelapp.catalogue.management.importing import import_run_execute_reported
from labelapp.catalogue.models import ImportKind
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.taxonomy import TAXONOMY_FORMATS


class Command(BaseCommand):
    help = ("Import a taxonomy: Google's 'ID - A > B > C' file or a 'path,exclusive' CSV. Upserts; leaf and "
            "exclusive flags are recomputed at the end.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=TAXONOMY_FORMATS, help="default: csv for .csv/.tsv, else google")
        parser.add_argument("--exclusive-file", type=Path,
                            help="the exclusive categories, one path or id a line (default: the leaves)")
        parser.add_argument("--source", default="", help="a name for this taxonomy, kept on the import run")
        parser.add_argument("--show-issues", type=int, default=20, help="row issues to print (default 20)")

    def handle(self, *args, file: Path, format: str | None, exclusive_file: Path | None, source: str,
               show_issues: int, **options):
        try:
            run = import_run_create(
                kind=ImportKind.TAXONOMY,
                file_name=str(file.resolve()),
                source=source,
                options={"format": format,
                         "exclusive_file": str(exclusive_file.resolve()) if exclusive_file else None},
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        import_run_execute_reported(command=self, import_run=run, description=f"import {file.name}",
                                    show_issues=show_issues)
