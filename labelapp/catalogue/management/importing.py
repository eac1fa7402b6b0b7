"""Helpers shared by management commands: a tqdm progress bar on stderr, and running an import with its report."""

from __future__ import annotations

from contextlib import contextmanager

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from tqdm import tqdm

from labelapp.catalogue.models import ImportRun, ImportStatus
from labelapp.catalogue.services.imports.execute import import_run_execute
from labelapp.catalogue.services.imports.runs import import_run_report


class TqdmStream:
    """Let tqdm write to a command's stderr: OutputWrapper.write would end every refresh with a newline."""

    def __init__(self, wrapper: OutputWrapper):
        self._wrapper = wrapper

    def write(self, text: str) -> None:
        self._wrapper.write(text, ending="")

    def flush(self) -> None:
        self._wrapper.flush()

    def isatty(self) -> bool:
        return self._wrapper.isatty()


@contextmanager
def progress_bar(stderr: OutputWrapper, *, description: str):
    """Yield a progress(bytes_done, bytes_total) callback drawing a tqdm bar (only on a terminal)."""
    with tqdm(desc=description, unit="B", unit_scale=True, file=TqdmStream(stderr), disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def import_run_execute_reported(*, command: BaseCommand, import_run: ImportRun, description: str,
                                show_issues: int) -> ImportRun:
    """Execute a queued run with a progress bar, print its report, and fail the command if the run failed."""
    with progress_bar(command.stderr, description=description) as progress:
        run = import_run_execute(import_run_id=import_run.id, progress=progress)
    command.stdout.write(import_run_report(import_run=run, issues_limit=show_issues))
    if run.status == ImportStatus.FAILED:
        raise CommandError(f"import {run.id} failed: {run.error}")
    return run
