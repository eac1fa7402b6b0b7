"""Onboarding a new catalogue (reviewers): one page whose sections are the steps, each with its state and progress.

The page is derived from the data (`onboarding_state`), so a reload shows where the flow stands. A running
import, train run or round fill polls its own fragment; the poll stops (HttpResponseStopPolling) and reloads the
page once when the job is done, so the next step appears.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from labelapp.catalogue.services.imports.files import ImportFileError
from labelapp.common.access import role_required
from labelapp.common.roles import REVIEWER
from labelapp.common.uploads import UploadTooLarge, upload_limited
from labelapp.workflow.onboarding_forms import FirstModelForm, FirstRoundForm, MappingForm, OnboardingUploadForm
from labelapp.workflow.onboarding_selectors import DONE, FAILED, onboarding_source_latest, onboarding_state
from labelapp.workflow.services.onboarding import (
    feed_columns_read,
    feed_preview_build,
    mapping_choice_default,
    onboarding_feed_categories_match,
    onboarding_import_submit,
    onboarding_round_open,
    onboarding_rules_bootstrap,
    onboarding_train_start,
    onboarding_upload_path,
    onboarding_upload_store,
)

FRAGMENTS = {"import": "labelapp/onboarding/_import_progress.html",
             "model": "labelapp/onboarding/_model_progress.html",
             "round": "labelapp/onboarding/_round_progress.html"}


def _page_url(*, source: str = "", upload: str = "", anchor: str = "") -> str:
    query = urlencode([(name, value) for name, value in (("source", source), ("upload", upload)) if value])
    return f"{reverse('onboarding')}{'?' + query if query else ''}{'#' + anchor if anchor else ''}"


def _mapping_context(*, token: str, data=None) -> dict:
    """The mapping form over the uploaded feed's columns and the preview of the mapping it holds."""
    path = onboarding_upload_path(token=token)
    if path is None:
        return {"upload_missing": True}
    try:
        columns = feed_columns_read(path=path)
    except ImportFileError as exc:
        return {"upload_name": path.name, "upload_error": str(exc)}
    default = mapping_choice_default(columns=columns, source=path.stem)
    form = MappingForm(data, columns=columns, initial_choice=default, upload=token)
    choice = form.choice() if data is not None and form.is_valid() else default
    return {"upload_name": path.name, "mapping_form": form, "token": token,
            "preview": feed_preview_build(path=path, choice=choice)}


def _bound_mapping(request: HttpRequest):
    """The query's mapping when it holds one (the form was changed), else None: the defaults."""
    return request.GET if "source" in request.GET and "upload" in request.GET else None


@role_required(REVIEWER)
def onboarding_view(request: HttpRequest) -> HttpResponse:
    """The whole flow; with `fragment`, one step's progress (htmx) or the mapping preview (htmx)."""
    fragment = request.GET.get("fragment", "")
    token = request.GET.get("upload", "")
    if fragment == "preview" and token:
        return render(request, "labelapp/onboarding/_preview.html",
                      _mapping_context(token=token, data=request.GET))
    context: dict = {}
    if token:
        context |= _mapping_context(token=token, data=_bound_mapping(request))
    form = context.get("mapping_form")
    source = request.GET.get("source", "").strip() or (form["source"].value() if form else "") or (
        "" if token else onboarding_source_latest())
    state = onboarding_state(source=source)
    context |= {"state": state, "source": source, "upload_form": OnboardingUploadForm(),
                "model_form": FirstModelForm(), "round_form": FirstRoundForm()}
    if fragment in FRAGMENTS:
        response = render(request, FRAGMENTS[fragment], context)
        if state.step(fragment).state in (DONE, FAILED):
            response = HttpResponseStopPolling(response.content)
            response["HX-Refresh"] = "true"
        return response
    return render(request, "labelapp/onboarding/page.html", context)


def _onboarding_upload_too_large(request: HttpRequest, error: UploadTooLarge) -> HttpResponse:
    messages.error(request, str(error))
    return redirect(_page_url())


@role_required(REVIEWER)
@require_POST
@upload_limited(_onboarding_upload_too_large)
def onboarding_upload_view(request: HttpRequest) -> HttpResponse:
    form = OnboardingUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a feed file to upload.")
        return redirect(_page_url())
    try:
        token = onboarding_upload_store(uploaded_file=form.cleaned_data["file"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_page_url())
    return redirect(_page_url(upload=token, anchor="mapping"))


def _query_without_token(request: HttpRequest) -> str:
    query = request.POST.copy()
    for name in ("csrfmiddlewaretoken", "action"):
        query.pop(name, None)
    return query.urlencode()


@role_required(REVIEWER)
@require_POST
def onboarding_import_view(request: HttpRequest) -> HttpResponse:
    token = request.POST.get("upload", "")
    if request.POST.get("action") == "preview":  # the no-JavaScript preview: back to the page, without the CSRF token
        return redirect(f"{reverse('onboarding')}?{_query_without_token(request)}#mapping")
    context = _mapping_context(token=token, data=request.POST)
    form = context.get("mapping_form")
    if form is None or not form.is_valid():
        messages.error(request, "The mapping is incomplete: see the form." if form else "Upload the feed again.")
        return redirect(_page_url(upload=token if form else "", anchor="mapping"))
    try:
        run = onboarding_import_submit(token=token, choice=form.choice(), user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(f"{reverse('onboarding')}?{_query_without_token(request)}#mapping")
    messages.success(request, f"Import {run.id} queued: the worker is reading {context['upload_name']}.")
    return redirect(_page_url(source=run.source, anchor="import"))


@role_required(REVIEWER)
@require_POST
def onboarding_match_view(request: HttpRequest) -> HttpResponse:
    source = request.POST.get("source", "")
    moved = onboarding_feed_categories_match(source=source)
    messages.success(request, f"Feed categories matched again: {moved} product{'s' if moved != 1 else ''} moved.")
    return redirect(_page_url(source=source, anchor="taxonomy"))


@role_required(REVIEWER)
@require_POST
def onboarding_rules_view(request: HttpRequest) -> HttpResponse:
    source = request.POST.get("source", "")
    result = onboarding_rules_bootstrap(source=source)
    messages.success(request, f"{result.rules_written} rules written from the category names; "
                              f"{result.rules_active} active rules gave {result.rule_labels_created} new rule labels "
                              f"on {result.products_labelled} products.")
    return redirect(_page_url(source=source, anchor="rules"))


@role_required(REVIEWER)
@require_POST
def onboarding_train_view(request: HttpRequest) -> HttpResponse:
    source = request.POST.get("source", "")
    form = FirstModelForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Check the model settings: " + "; ".join(
            f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
        return redirect(_page_url(source=source, anchor="model"))
    try:
        run = onboarding_train_start(user=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_page_url(source=source, anchor="model"))
    messages.success(request, f"Train run {run.id} queued on the ml worker.")
    return redirect(_page_url(source=source, anchor="model"))


@role_required(REVIEWER)
@require_POST
def onboarding_round_view(request: HttpRequest) -> HttpResponse:
    source = request.POST.get("source", "")
    form = FirstRoundForm(request.POST)
    if form.is_valid():
        try:
            round = onboarding_round_open(user=request.user, batch_size=form.cleaned_data["batch_size"],
                                          train_run=onboarding_state(source=source).train_run)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Round {round.number} opened: the worker is choosing its products.")
    else:
        messages.error(request, "The batch size must be between 1 and 10,000.")
    return redirect(_page_url(source=source, anchor="round"))
