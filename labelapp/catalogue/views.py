"""HTML pages of the catalogue (htmx): a partial for htmx requests, the whole page otherwise."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django_htmx.http import HttpResponseStopPolling

from labelapp.catalogue import selectors
from labelapp.catalogue.models import Category, ImportKind, ImportRun, RowOutcome
from labelapp.catalogue.services.import_jobs import import_job_submit
from labelapp.common.access import role_required
from labelapp.common.querystring import int_or_none, yes_no
from labelapp.common.roles import LABELLER, REVIEWER


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


@role_required(REVIEWER)
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
    page = Paginator(selectors.import_run_list(), 25).get_page(request.GET.get("page"))
    return render(request, "labelapp/import_list.html", {"page": page, "form": form},
                  status=400 if form.errors else 200)


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
