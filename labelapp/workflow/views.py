"""HTML pages of the labelling workflow (htmx): labelling, rounds, the product page that shows the model, and the
operations page (queues, workers, the outbox, recent failures: it spans every app)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from classifier.core.names import ARCHITECTURE_NAMES
from classifier.core.sampling import STRATEGIES
from classifier.selectors.predictions import prediction_categories, prediction_current
from classifier.selectors.versions import model_version_active
from labelapp.catalogue import selectors as catalogue_selectors
from labelapp.catalogue.models import Category, Product
from labelapp.common.access import role_required
from labelapp.common.querystring import int_or_none
from labelapp.common.roles import LABELLER, REVIEWER
from labelapp.common.selectors import operations_overview
from labelapp.workflow import selectors
from labelapp.workflow.models import LabellingRound, QueueItem, QueueItemStatus, RoundStatus
from labelapp.workflow.services.queue import (
    QueueError,
    label_undo_last,
    queue_item_skip,
    queue_item_submit,
    queue_items_lease,
)
from labelapp.workflow.services.rounds import (
    MAX_BATCH_SIZE,
    labelling_round_close,
    labelling_round_create,
    labelling_round_setting,
)


@role_required(LABELLER, REVIEWER)
def product_detail_view(request: HttpRequest, product_id: int) -> HttpResponse:
    try:
        product = catalogue_selectors.product_detail(product_id=product_id)
    except Product.DoesNotExist:
        return render(request, "labelapp/not_found.html", {"what": f"product {product_id}"}, status=404)
    ancestors = Category.objects.filter(id__in=product.category.lineage).order_by("depth") if product.category else []
    prediction = prediction_current(product_id=product.id)
    suggestions = []
    if prediction is not None:
        categories = prediction_categories(predictions=[prediction])
        suggestions = [(categories.get(category_id), probability) for category_id, probability in prediction.top_k]
    evidence = catalogue_selectors.category_evidence(products=[product])[product.id]
    return render(request, "labelapp/product_detail.html", {"product": product, "ancestors": ancestors,
                                                            "prediction": prediction, "suggestions": suggestions,
                                                            "evidence": evidence})



# --- labelling (labellers) and labelling rounds (reviewers) ----------------------------------------------------

HELD_CARDS = 2


def _labelling_model_version_id(round: LabellingRound) -> int | None:
    """The model whose suggestions the cards show: the round's, else the active one (none on a cold start)."""
    if round.model_version_id is not None:
        return round.model_version_id
    version = model_version_active()
    return version.id if version else None


def _labelling_render(request: HttpRequest, template: str, *, round: LabellingRound | None, held: list,
                      current_id: int | None = None, showing_id: int | None = None,
                      message: str = "") -> HttpResponse:
    """Render the labelling page or one of its partials from the items the user holds (at most two cards).

    Page and workspace: the first card is on screen (`current_id` first when given), the second preloaded.
    After a submit or skip (`showing_id` given, or the browser showed nothing): every held card but the one
    the browser already shows goes to the preload slot; the browser moves the first onto the screen if empty.
    """
    held = [item for item in held if item.pk != showing_id]
    if current_id is not None:
        held.sort(key=lambda item: item.pk != current_id)
    held = held[:HELD_CARDS]
    cards = selectors.queue_cards(items=held, model_version_id=_labelling_model_version_id(round)) if held else []
    context = {
        "round": round, "current": cards[0] if cards else None, "preload": cards[1:], "cards": cards,
        "counts": selectors.labelling_round_counts(round=round, user=request.user) if round else None,
        "message": message,
    }
    return render(request, template, context)


@role_required(LABELLER)
def labelling_view(request: HttpRequest) -> HttpResponse:
    """The labelling page: the open round's progress, the product on screen and the next one preloaded."""
    round = selectors.labelling_round_open()
    held = queue_items_lease(user=request.user, round=round, count=HELD_CARDS) if round else []
    template = "labelapp/labelling/_workspace.html" if request.htmx else "labelapp/labelling/label.html"
    return _labelling_render(request, template, round=round, held=held)


def _labelling_after_action(request: HttpRequest, *, message: str,
                            round: LabellingRound | None = None) -> HttpResponse:
    """Answer a submit or skip: the preloaded card(s) the browser lacks, the progress and any message.

    `round`: the submitted item's round as the submit read it (saves a query); else the open round is read.
    """
    if not request.htmx:
        if message:
            messages.warning(request, message)
        return redirect("labelling")
    if round is None or round.status != RoundStatus.OPEN:
        round = selectors.labelling_round_open()
    held = queue_items_lease(user=request.user, round=round, count=HELD_CARDS) if round else []
    return _labelling_render(request, "labelapp/labelling/_preload.html", round=round, held=held,
                             showing_id=int_or_none(request.POST.get("showing")), message=message)


class LabelSubmitForm(forms.Form):
    category = forms.CharField(max_length=20, error_messages={"required": "Pick a category, or “none fits”."})
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=24 * 3600 * 1000)
    token = forms.CharField(required=False, max_length=40)
    flagged = forms.BooleanField(required=False)
    note = forms.CharField(required=False, max_length=500)

    def clean_category(self) -> Category | None:
        value = self.cleaned_data["category"].strip()
        if value == "none":
            return None
        category = Category.objects.filter(pk=int_or_none(value) or 0, is_exclusive=True).first()
        if category is None:
            raise ValidationError("Pick one of the exclusive categories.")
        return category


@role_required(LABELLER)
@require_POST
def labelling_submit_view(request: HttpRequest, item_id: int) -> HttpResponse:
    form = LabelSubmitForm(request.POST)
    message, label = "", None
    if not form.is_valid():
        message = " ".join(error for errors in form.errors.values() for error in errors)
    else:
        data = form.cleaned_data
        try:
            label = queue_item_submit(item_id=item_id, user=request.user, category=data["category"],
                                      time_spent_ms=data["time_spent_ms"], flagged=data["flagged"],
                                      note=data["note"], token=data["token"])
        except QueueItem.DoesNotExist:
            message = "That product is no longer in the queue."
        except QueueError as error:
            message = str(error)
    return _labelling_after_action(request, message=message, round=label.context.round if label else None)


@role_required(LABELLER)
@require_POST
def labelling_skip_view(request: HttpRequest, item_id: int) -> HttpResponse:
    message = ""
    try:
        queue_item_skip(item_id=item_id, user=request.user)
    except QueueItem.DoesNotExist:
        message = "That product is no longer in the queue."
    except QueueError as error:
        message = str(error)
    return _labelling_after_action(request, message=message)


@role_required(LABELLER)
@require_POST
def labelling_undo_view(request: HttpRequest) -> HttpResponse:
    """Undo the user's last label in the open round and put that product back on screen."""
    round = selectors.labelling_round_open()
    item, message = None, ""
    if round is None:
        message = "No round is open."
    else:
        try:
            item = label_undo_last(user=request.user, round=round)
        except QueueError as error:
            message = str(error)
        if item is None and not message:
            message = "Nothing to undo in this round."
    if not request.htmx:
        if message:
            messages.warning(request, message)
        return redirect("labelling")
    held = queue_items_lease(user=request.user, round=round, count=HELD_CARDS) if round else []
    return _labelling_render(request, "labelapp/labelling/_workspace.html", round=round, held=held,
                             current_id=item.pk if item else None, message=message)


@role_required(LABELLER, REVIEWER)
def labelling_categories_view(request: HttpRequest) -> JsonResponse:
    """Every exclusive category as [id, full path], for the type-ahead: sent once, filtered in the browser."""
    version = Category.objects.filter(is_exclusive=True).aggregate(n=Count("id"), last=Max("id"))
    key = f"labelling:exclusive-categories:{version['n']}:{version['last']}"
    paths = cache.get(key)
    if paths is None:
        paths = catalogue_selectors.category_exclusive_paths()
        cache.set(key, paths, 3600)
    response = JsonResponse({"categories": paths})
    response["Cache-Control"] = "private, max-age=300"
    return response


def _round_strategy_choices() -> list[tuple[str, str]]:
    return [(name, strategy.label) for name, strategy in STRATEGIES.items()]


class LabellingRoundForm(forms.Form):
    """A round's settings; the strategy shares are one number field per registered strategy."""

    OBJECTIVE_CHOICES = [("exclusive", "exclusive labels"), ("exclusive+rule", "exclusive labels + rule labels")]

    batch_size = forms.IntegerField(min_value=1, max_value=MAX_BATCH_SIZE, initial=100)
    objectives = forms.ChoiceField(choices=OBJECTIVE_CHOICES, initial="exclusive", widget=forms.RadioSelect)
    random_share = forms.IntegerField(min_value=0, max_value=100, initial=0, label="Random share (%)",
                                      help_text="Drawn at random on top of the mix: an unbiased accuracy estimate.")
    architecture = forms.ChoiceField(required=False, label="Architecture (retraining)")
    diversity = forms.FloatField(required=False, min_value=0, max_value=1, initial=0,
                                 help_text="0: none; higher spreads the batch out in embedding space.")
    auto_continue = forms.BooleanField(required=False, initial=True, label="Open the next round after retraining")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["architecture"].choices = [("", "default"), *((name, name) for name in ARCHITECTURE_NAMES)]
        self.strategy_fields = []
        for name, label in _round_strategy_choices():
            field_name = f"share_{name}"
            self.fields[field_name] = forms.IntegerField(min_value=0, max_value=100, required=False, label=label,
                                                         initial=100 if name == "entropy" else 0)
            self.strategy_fields.append(field_name)

    def strategy_mix(self) -> dict[str, float]:
        return {name.removeprefix("share_"): float(self.cleaned_data[name]) for name in self.strategy_fields
                if self.cleaned_data.get(name)}

    def strategy_bound_fields(self):
        return [self[name] for name in self.strategy_fields]


@role_required(REVIEWER)
def round_list_view(request: HttpRequest) -> HttpResponse:
    """Reviewers: every round with its progress, and the form that opens a new one."""
    form = LabellingRoundForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = {"diversity": data["diversity"]} if data.get("diversity") else {}
        try:
            round = labelling_round_create(
                strategy_mix=form.strategy_mix(), batch_size=data["batch_size"],
                objectives=data["objectives"].split("+"), architecture=data["architecture"],
                random_share=data["random_share"] / 100, options=options, auto_continue=data["auto_continue"],
                user=request.user)
        except ValidationError as error:
            by_field = error.message_dict.items() if hasattr(error, "error_dict") else [(None, error.messages)]
            for field, errors in by_field:
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Round {round.number} opened: the worker is choosing its {round.batch_size} "
                                      f"products.")
            return redirect("round-detail", round_id=round.pk)
    rounds = list(selectors.labelling_round_list()[:50])
    progress = {row["round"]: row for row in QueueItem.objects.filter(round__in=rounds).values("round").annotate(
        total=Count("id"), done=Count("id", filter=Q(status=QueueItemStatus.DONE)))}
    rows = [(round, progress.get(round.pk, {"total": 0, "done": 0}), labelling_round_setting(round))
            for round in rounds]
    return render(request, "labelapp/labelling/rounds.html", {"rows": rows, "form": form},
                  status=400 if form.errors else 200)


@role_required(REVIEWER)
def round_detail_view(request: HttpRequest, round_id: int) -> HttpResponse:
    """Reviewers: one round's progress (live while it fills, runs or retrains) and its flagged items."""
    round = get_object_or_404(LabellingRound.objects.select_related("train_run", "model_version", "previous"),
                              pk=round_id)
    context = {"progress": selectors.labelling_round_progress(round=round), "round": round,
               "setting": labelling_round_setting(round)}
    if request.htmx and request.GET.get("fragment") == "progress":
        response = render(request, "labelapp/labelling/_round_progress.html", context)
        if round.status in (RoundStatus.CLOSED, RoundStatus.FAILED):
            # Stop polling and reload once, so the finished round shows its next round and outcome.
            response = HttpResponseStopPolling(response.content)
            response["HX-Refresh"] = "true"
        return response
    context["flagged"] = (QueueItem.objects.filter(round=round, flagged=True)
                          .select_related("product", "label__category", "label__labeller").order_by("done_at")[:100])
    context["next_round"] = LabellingRound.objects.filter(previous=round).first()
    return render(request, "labelapp/labelling/round_detail.html", context)


@role_required(REVIEWER)
@require_POST
def round_close_view(request: HttpRequest, round_id: int) -> HttpResponse:
    """Reviewers: close a round early; its retraining starts."""
    round = labelling_round_close(round_id=get_object_or_404(LabellingRound, pk=round_id).pk, user=request.user,
                                  reason=f"closed early by {request.user.get_username()}")
    if round.status == RoundStatus.CLOSING:
        messages.success(request, f"Round {round.number} is closing: retraining has started.")
    elif round.status == RoundStatus.FAILED:
        messages.error(request, f"Round {round.number} could not retrain: {round.error}")
    return redirect("round-detail", round_id=round.pk)


# --- operations (reviewers and staff) ----------------------------------------------------------------------------

OPERATIONS_REFRESH_SECONDS = 10


@role_required(REVIEWER)
def operations_view(request: HttpRequest) -> HttpResponse:
    """Queues, workers, the outbox, services and recent failures; each part says "unavailable" when it cannot be read.

    The panels refresh themselves (htmx) every OPERATIONS_REFRESH_SECONDS.
    """
    context = {"overview": operations_overview(), "failures": selectors.operations_failures(),
               "refresh_seconds": OPERATIONS_REFRESH_SECONDS}
    template = "labelapp/_operations_panels.html" if request.htmx else "labelapp/operations.html"
    return render(request, template, context)
