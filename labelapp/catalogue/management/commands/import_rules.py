"""Import legacy rules from a JSON or CSV file and print the import's report."""

from __future__ import annotations

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from labelapp.catalogue.models import ImportKind, ImportStatus
from labelapp.catalogue.services.imports.runs import import_run_create, import_run_report
from labelapp.catalogue.services.rules import RULES_FILE_FORMAT, rules_import


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the file-format description's line breaks."""


class Command(BaseCommand):
    help = "Import legacy rules (upsert by name) from a JSON or CSV file. Bad rules are reported, never fatal.\n\n" + (
        RULES_FILE_FORMAT)

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, formatter_class=_HelpFormatter, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="The rules file (.json or .csv).")
        parser.add_argument("--show-issues", type=int, default=20, help="row issues to print (default 20)")

    def handle(self, *args, file: Path, show_issues: int, **options):
        run = import_run_create(kind=ImportKind.RULES, file_name=str(file.resolve()))
        run = rules_import(import_run=run, path=file)
        self.stdout.write(import_run_report(import_run=run, issues_limit=show_issues))
        if run.status == ImportStatus.FAILED:
            raise CommandError(f"import {run.id} failed: {run.error}")
