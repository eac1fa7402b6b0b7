"""HTML pages of the catalogue (htmx): a partial for htmx requests, the whole page otherwise."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from labelapp.catalogue import selectors
from labelapp.catalogue.forms import FeedUploadForm, TaxonomyProposalForm
from labelapp.catalogue.models import Category, ImportKind, ImportRun, RowOutcome
from labelapp.catalogue.services.import_jobs import import_job_submit
from labelapp.catalogue.services.taxonomy_proposals import taxonomy_proposal_apply, taxonomy_proposal_upload_store
from labelapp.catalogue.taxonomy_proposal import proposal_csv_text, taxonomy_propose
from labelapp.common.access import role_required
from labelapp.common.querystring import int_or_none, yes_no
from labelapp.common.roles import LABELLER, REVIEWER
from labelapp.common.uploads import UploadTooLarge, upload_limited


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "counts": selectors.catalogue_counts(),
        "recent_imports": selectors.import_run_list()[:5],
        "sources": selectors.product_sources(),
    }
    return render(request, "labelapp/home.html", context)


@role_required(LABELLER, REVIEWER)
def product_list_view(request: HttpRequest) -> HttpResponse:
    filters = selectors.ProductFilters(
        q=request.GET.get("q", "").strip(),
        category_id=int_or_none(request.GET.get("category")),
        source=request.GET.get("source", ""),
        labelled=yes_no(request.GET.get("labelled")),
        has_image=yes_no(request.GET.get("has_image")),
    )
    page = Paginator(selectors.product_list(filters=filters), 48).get_page(request.GET.get("page"))
    selected_category = Category.objects.filter(pk=filters.category_id).first() if filters.category_id else None
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "filters": filters, "sources": selectors.product_sources(),
               "selected_category": selected_category, "query": query.urlencode(), "hx_target": "#results"}
    template = "labelapp/_product_results.html" if request.htmx else "labelapp/product_list.html"
    return render(request, template, context)


@login_required
def category_tree_view(request: HttpRequest) -> HttpResponse:
    parent_id = int_or_none(request.GET.get("parent"))
    nodes = selectors.category_children_with_counts(parent_id=parent_id)
    if request.htmx and parent_id:
        return render(request, "labelapp/_category_children.html", {"nodes": nodes})
    return render(request, "labelapp/category_tree.html", {"nodes": nodes})


class ImportUploadForm(forms.Form):
    kind = forms.ChoiceField(choices=ImportKind.choices, initial=ImportKind.PRODUCTS)
    file = forms.FileField()
    source = forms.CharField(required=False, max_length=100,
                             help_text="Affiliate network name (products; default: the mapping's or the file name)")
    mapping = forms.FileField(required=False, help_text="TOML mapping (products only)")


def _import_upload_too_large(request: HttpRequest, error: UploadTooLarge) -> HttpResponse:
    # The body was not read (or not all of it): show the form again, with the reason, and nothing stored.
    form = ImportUploadForm(data={}, files={})
    form.errors.clear()
    form.add_error("file", str(error))
    return _import_list_render(request, form=form, status=413)


@role_required(REVIEWER)
@upload_limited(_import_upload_too_large)
def import_list_view(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = import_job_submit(kind=form.cleaned_data["kind"], uploaded_file=form.cleaned_data["file"],
                                    user=request.user, source=form.cleaned_data["source"],
                                    mapping_file=form.cleaned_data["mapping"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Import {run.id} queued: the worker is reading {form.cleaned_data['file'].name}.")
            return redirect("import-detail", run_id=run.id)
    return _import_list_render(request, form=form, status=400 if form.errors else 200)


def _import_list_render(request: HttpRequest, *, form: ImportUploadForm, status: int) -> HttpResponse:
    page = Paginator(selectors.import_run_list(), 25).get_page(request.GET.get("page"))
    return render(request, "labelapp/import_list.html", {"page": page, "form": form}, status=status)


@role_required(REVIEWER)
def import_detail_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(ImportRun, pk=run_id)
    if request.htmx and request.GET.get("fragment") == "status":
        response = render(request, "labelapp/_import_status.html", {"run": run})
        if run.is_finished:
            # Stop polling and reload once, so the finished report shows its row issues.
            response = HttpResponseStopPolling(response.content)
            response["HX-Refresh"] = "true"
        return response
    outcome = request.GET.get("outcome", "")
    issues = run.row_issues.all()
    if outcome in RowOutcome.values:
        issues = issues.filter(outcome=outcome)
    page = Paginator(issues, 100).get_page(request.GET.get("page"))
    return render(request, "labelapp/import_detail.html",
                  {"run": run, "runs": [run], "page": page, "outcome": outcome, "outcomes": RowOutcome.choices,
                   "query": f"outcome={outcome}" if outcome else ""})


# --------------------------------------------------------------------------------------------------------------
# A taxonomy proposed from a feed's own category paths (for a catalogue without a taxonomy yet)

PROPOSAL_TREE_ROWS = 1000
PROPOSAL_CHANGE_ROWS = 50


def _proposal_context(form: TaxonomyProposalForm) -> dict:
    """The page's context: the form, and when it is valid the proposal with the rows the page shows."""
    items = form.query_items()
    context = {"form": form, "hidden": items, "query": urlencode(items), "tree_rows": PROPOSAL_TREE_ROWS,
               "categories": selectors.category_list().count()}
    if form.is_valid():
        paths = form.feed_paths()
        proposal = taxonomy_propose(path_counts=paths.path_counts, options=form.proposal_options())
        context |= {"paths": paths, "proposal": proposal, "nodes": proposal.nodes[:PROPOSAL_TREE_ROWS],
                    "changes": proposal.changes[:PROPOSAL_CHANGE_ROWS], "change_rows": PROPOSAL_CHANGE_ROWS}
    return context


def _proposal_page(request: HttpRequest, *, form: TaxonomyProposalForm, upload_form: FeedUploadForm | None = None,
                   status: int = 200) -> HttpResponse:
    context = _proposal_context(form) | {"upload_form": upload_form or FeedUploadForm()}
    template = "labelapp/_taxonomy_proposal.html" if request.htmx else "labelapp/taxonomy_propose.html"
    return render(request, template, context, status=status)


@role_required(REVIEWER)
def taxonomy_propose_view(request: HttpRequest) -> HttpResponse:
    return _proposal_page(request, form=TaxonomyProposalForm(request.GET))


def _proposal_upload_too_large(request: HttpRequest, error: UploadTooLarge) -> HttpResponse:
    upload_form = FeedUploadForm(data={}, files={})
    upload_form.errors.clear()
    upload_form.add_error("file", str(error))
    return _proposal_page(request, form=TaxonomyProposalForm(), upload_form=upload_form, status=413)


@role_required(REVIEWER)
@require_POST
@upload_limited(_proposal_upload_too_large)
def taxonomy_propose_upload_view(request: HttpRequest) -> HttpResponse:
    upload_form = FeedUploadForm(request.POST, request.FILES)
    if upload_form.is_valid():
        data = upload_form.cleaned_data
        try:
            token = taxonomy_proposal_upload_store(uploaded_file=data["file"], mapping_file=data["mapping"],
                                                   file_format=data["format"] or None, path_field=data["path_field"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                upload_form.add_error(field if field in upload_form.fields else None, errors)
        else:
            return redirect(f"{reverse('taxonomy-propose')}?{urlencode({'feed': f'upload:{token}'})}")
    return _proposal_page(request, form=TaxonomyProposalForm(), upload_form=upload_form, status=400)


@role_required(REVIEWER)
def taxonomy_proposal_csv_view(request: HttpRequest) -> HttpResponse:
    form = TaxonomyProposalForm(request.GET)
    if not form.is_valid():
        return _proposal_page(request, form=form, status=400)
    proposal = taxonomy_propose(path_counts=form.feed_paths().path_counts, options=form.proposal_options())
    response = HttpResponse(proposal_csv_text(proposal), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="taxonomy-proposal.csv"'
    return response


@role_required(REVIEWER)
@require_POST
def taxonomy_proposal_apply_view(request: HttpRequest) -> HttpResponse:
    """Show what applying the proposal would create; with confirmed=yes, apply it and show what it created."""
    form = TaxonomyProposalForm(request.POST)
    if not form.is_valid():
        return _proposal_page(request, form=form, status=400)
    paths = form.feed_paths()
    proposal = taxonomy_propose(path_counts=paths.path_counts, options=form.proposal_options())
    existing = selectors.category_full_paths_existing(full_paths=[node.path for node in proposal.nodes])
    new_nodes = [node for node in proposal.nodes if node.path not in existing]
    context = {"form": form, "hidden": form.query_items(), "query": urlencode(form.query_items()), "paths": paths,
               "proposal": proposal, "new_nodes": new_nodes[:PROPOSAL_TREE_ROWS], "new_count": len(new_nodes),
               "existing_count": len(existing), "tree_rows": PROPOSAL_TREE_ROWS,
               "categories": selectors.category_list().count()}
    if request.POST.get("confirmed") == "yes" and proposal.nodes:
        context["run"] = taxonomy_proposal_apply(proposal=proposal, feed_name=paths.name, user=request.user)
    return render(request, "labelapp/taxonomy_proposal_apply.html", context)
