"""HTML pages (htmx) of the feed category mapping: where each source's own category paths land in the taxonomy.

Kept beside views.py rather than in it: one job, and reviewers' pages of another job grow there meanwhile.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labelapp.catalogue import selectors
from labelapp.catalogue.models import Category, FeedCategoryMode, Product
from labelapp.catalogue.services.feed_categories import (
    feed_category_entry_delete,
    feed_category_entry_set,
    feed_category_map_update,
)
from labelapp.catalogue.services.feed_category_review import feed_path_rows, feed_path_rows_complete
from labelapp.common.access import role_required
from labelapp.common.querystring import yes_no
from labelapp.common.roles import REVIEWER

PATHS_PER_PAGE = 50
OPTIONS_SHOWN = 20


class FeedCategoryModeForm(forms.Form):
    mode = forms.ChoiceField(choices=FeedCategoryMode.choices)
    levels = forms.IntegerField(required=False, min_value=1, max_value=20,
                                help_text="Levels kept by the cut mode.")


class FeedCategoryEntryForm(forms.Form):
    ACTIONS = [("set", "map to the category"), ("none", "map to no category"), ("clear", "let the mode decide")]

    feed_path = forms.CharField(max_length=2000, strip=False)
    action = forms.ChoiceField(choices=ACTIONS, required=False)  # Enter in the type-ahead sends none: "set"
    category = forms.IntegerField(required=False, min_value=1)
    category_path = forms.CharField(required=False, max_length=2000)

    def clean(self) -> dict:
        data = super().clean()
        data["action"] = data.get("action") or "set"
        if data["action"] == "set":
            if data.get("category"):
                data["node"] = Category.objects.filter(pk=data["category"]).first()
            elif data.get("category_path"):
                data["node"] = Category.objects.filter(full_path__iexact=data["category_path"].strip()).first()
            if not data.get("node"):
                raise ValidationError("Choose a category of the tree (type part of its path, pick one of the list).")
        return data


def _source_known(source: str) -> None:
    if not Product.objects.filter(source=source).exists():
        raise Http404(f"No products from source {source!r}.")


@role_required(REVIEWER)
def feed_source_list_view(request: HttpRequest) -> HttpResponse:
    return render(request, "labelapp/feed_sources.html", {"sources": selectors.feed_category_source_list()})


@role_required(REVIEWER)
def feed_category_map_view(request: HttpRequest, source: str) -> HttpResponse:
    _source_known(source)
    unmatched_only = yes_no(request.GET.get("unmatched")) is True
    q = request.GET.get("q", "").strip()
    rows = feed_path_rows(source=source, unmatched_only=unmatched_only, q=q)
    page = Paginator(rows, PATHS_PER_PAGE).get_page(request.GET.get("page"))
    feed_path_rows_complete(source=source, rows=page.object_list)
    feed_map = selectors.feed_category_map_get(source=source)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "source": source, "page": page, "unmatched_only": unmatched_only, "q": q, "query": query.urlencode(),
        "hx_target": "#feed-paths", "feed_map": feed_map,
        "mode_form": FeedCategoryModeForm(initial={"mode": feed_map.mode if feed_map else FeedCategoryMode.EXACT,
                                                   "levels": feed_map.levels if feed_map else None}),
    }
    template = "labelapp/_feed_path_table.html" if request.htmx else "labelapp/feed_category_map.html"
    return render(request, template, context)


@require_POST
@role_required(REVIEWER)
def feed_category_mode_view(request: HttpRequest, source: str) -> HttpResponse:
    _source_known(source)
    form = FeedCategoryModeForm(request.POST)
    if form.is_valid():
        try:
            _, result = feed_category_map_update(source=source, mode=form.cleaned_data["mode"],
                                                 levels=form.cleaned_data["levels"], user=request.user)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, f"Mapping saved: {result.products_remapped:,} products re-mapped, "
                                      f"{result.categories_changed:,} effective categories changed.")
    else:
        messages.error(request, "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
    return redirect("feed-category-map", source=source)


@require_POST
@role_required(REVIEWER)
def feed_category_entry_view(request: HttpRequest, source: str) -> HttpResponse:
    _source_known(source)
    form = FeedCategoryEntryForm(request.POST)
    error = ""
    if form.is_valid():
        data = form.cleaned_data
        if data["action"] == "clear":
            feed_category_entry_delete(source=source, feed_path=data["feed_path"])
        else:
            feed_category_entry_set(source=source, feed_path=data["feed_path"], user=request.user,
                                    category=data.get("node") if data["action"] == "set" else None)
    else:
        error = " ".join(message for errors in form.errors.values() for message in errors)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(reverse("feed-category-map", kwargs={"source": source}) + "?"
                        + urlencode({"q": request.POST.get("feed_path", "")}))
    rows = feed_path_rows(source=source, feed_paths=[request.POST.get("feed_path", "")])
    feed_path_rows_complete(source=source, rows=rows)
    # 200 even with an error: htmx swaps only successful answers, and the row shows the error in place.
    return render(request, "labelapp/_feed_path_row.html",
                  {"source": source, "row": rows[0] if rows else None, "error": error})


@role_required(REVIEWER)
def feed_category_options_view(request: HttpRequest) -> HttpResponse:
    """The type-ahead's choices: categories whose path contains what was typed, as <option>s of a datalist."""
    q = (request.GET.get("category_path") or request.GET.get("q") or "").strip()
    categories = selectors.category_list(q=q)[:OPTIONS_SHOWN] if len(q) >= 2 else []
    return render(request, "labelapp/_category_options.html", {"categories": categories})
