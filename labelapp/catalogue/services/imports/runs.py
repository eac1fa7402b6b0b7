"""An ImportRun's lifecycle (create, start, fail, succeed), its buffered row issues and its plain-text report."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count
from django.utils import timezone

from labelapp.catalogue.models import ImportKind, ImportRowIssue, ImportRun, ImportStatus, RowOutcome

ISSUE_RAW_MAX_CHARS = 10_000


def import_run_create(*, kind: str, file_name: str, source: str = "", options: dict | None = None,
                      user: AbstractBaseUser | None = None) -> ImportRun:
    """Create a queued ImportRun for a file; a command, task, admin action or API then executes it."""
    run = ImportRun(kind=kind, file_name=file_name, source=source, options=options or {}, created_by=user)
    run.full_clean()
    run.save()
    return run


def import_run_start(*, import_run: ImportRun) -> bool:
    """Move a queued run to running; return False when another worker already took it (duplicate delivery)."""
    now = timezone.now()
    taken = ImportRun.objects.filter(pk=import_run.pk, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=now
    )
    import_run.refresh_from_db()
    return bool(taken)


def import_run_fail(*, import_run: ImportRun, error: str) -> None:
    """Mark a run failed with the reason; the batches it committed before stay as they are."""
    ImportRun.objects.filter(pk=import_run.pk).update(
        status=ImportStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )
    import_run.refresh_from_db()


def import_run_succeed(*, import_run: ImportRun, counts: dict[str, int]) -> None:
    """Mark a run succeeded with its final counts."""
    ImportRun.objects.filter(pk=import_run.pk).update(
        status=ImportStatus.SUCCEEDED, finished_at=timezone.now(), **counts
    )
    import_run.refresh_from_db()


def import_run_issues_url(*, import_run: ImportRun) -> str:
    """Return the admin URL listing every row issue of a run."""
    return f"/admin/labelapp/importrowissue/?import_run__id__exact={import_run.pk}"


class RowIssueBuffer:
    """Collect ImportRowIssue rows and write them with bulk_create, inside the caller's batch transaction."""

    def __init__(self, *, import_run: ImportRun):
        self.import_run = import_run
        self.pending: list[ImportRowIssue] = []

    def add(self, *, line: int, outcome: str, reason: str, raw: str = "") -> None:
        self.pending.append(ImportRowIssue(
            import_run=self.import_run, line=max(line, 0), outcome=outcome, reason=reason[:1000],
            raw=_raw_clip(raw),
        ))

    def __len__(self) -> int:
        return len(self.pending)

    def flush(self) -> None:
        if self.pending:
            ImportRowIssue.objects.bulk_create(self.pending)
            self.pending = []


def _raw_clip(text: str) -> str:
    text = text.replace("\x00", "\\x00")
    if len(text) > ISSUE_RAW_MAX_CHARS:
        return text[:ISSUE_RAW_MAX_CHARS] + f"… [{len(text) - ISSUE_RAW_MAX_CHARS} more characters]"
    return text


# --------------------------------------------------------------------------------------------------------------
# Reporting


def import_run_report(*, import_run: ImportRun, issues_limit: int = 20) -> str:
    """Return a plain-text summary of a run: counts, the first row issues, and where to see them all."""
    run = import_run
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0.0
    lines = [f"Import {run.pk} ({run.kind}{', source ' + run.source if run.source else ''}) {run.status} "
             f"in {took:.1f}s"]
    if run.error:
        lines.append(f"  error: {run.error}")
    lines.append(f"  rows: {run.rows_total:,} read, {run.rows_created:,} created, {run.rows_updated:,} updated, "
                 f"{run.rows_rejected:,} rejected, {run.rows_repaired:,} repaired")
    if run.kind == ImportKind.PRODUCTS:
        lines.append(f"  images: {run.images_stored:,} stored, {run.images_failed:,} failed")
        lines += _category_report_lines(run)
    issue_count = run.row_issues.count()
    if issue_count:
        by_outcome = dict(run.row_issues.values_list("outcome").annotate(n=Count("id")).order_by())
        lines.append("  issues: " + ", ".join(f"{by_outcome[outcome]:,} {outcome}" for outcome in
                                               RowOutcome.values if outcome in by_outcome))
        for issue in run.row_issues.order_by("line", "id")[:issues_limit]:
            lines.append(f"    line {issue.line:>7}  {issue.outcome:<8}  {issue.reason}")
        if issue_count > issues_limit:
            lines.append(f"    … and {issue_count - issues_limit:,} more")
        lines.append(f"  all issues: {import_run_issues_url(import_run=run)} (admin), or "
                     f"ImportRowIssue.objects.filter(import_run_id={run.pk})")
    return "\n".join(lines)


def _category_report_lines(run: ImportRun) -> list[str]:
    """The feed categories part of a product import's report: matched, unmatched, the top unmatched paths."""
    report = run.category_report or {}
    if not report:
        return []
    lines = [f"  feed categories ({report.get('mapping', 'exact')}): {report.get('matched', 0):,} products matched "
             f"a category, {report.get('unmatched', 0):,} did not, {report.get('without_path', 0):,} had no path"]
    top = report.get("top_unmatched") or []
    if top:
        lines.append("    most frequent unmatched paths:")
        lines += [f"    {row['products']:>7}  {row['path']}" for row in top]
        lines.append(f"    map them: /imports/sources/{quote(run.source, safe='')}/categories/?unmatched=yes")
    return lines
