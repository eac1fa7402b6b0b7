"""Evaluation pages (htmx) for reviewers: neighbours per scope and modality, judgements, precision; job progress.

A partial for htmx requests, the whole page otherwise; every hx-get sits beside a real href.
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from labelapp.catalogue.models import Product
from labelapp.common.access import role_required
from labelapp.common.querystring import choice
from labelapp.common.roles import REVIEWER
from similarity.models import EmbeddingJob, Modality, Scope
from similarity.selectors.evaluation import (
    evaluation_product_random,
    evaluation_product_search,
    evaluation_version,
    judgement_map,
    judgement_precision_by_category,
)
from similarity.selectors.jobs import embedding_coverage, embedding_job_list
from similarity.selectors.settings import similarity_settings
from similarity.selectors.similar import SimilarityError, product_briefs, product_similar_list
from similarity.services.evaluation import judgement_record, precision_same_category_compute
from similarity.services.jobs import embedding_job_start

EVALUATION_K = 10


def _state(is_similar: bool | None) -> str:
    return {True: "is-similar", False: "is-not-similar"}.get(is_similar, "")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _int(value: str | None, *, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value)))
    except (TypeError, ValueError):
        return default


@role_required(REVIEWER)
@require_GET
def evaluation_home_view(request: HttpRequest) -> HttpResponse:
    config = similarity_settings()
    q = request.GET.get("q", "").strip()[:200]
    products = evaluation_product_search(q=q, model_version=config.model_version)
    if request.htmx:
        return render(request, "similarity/_search_results.html", {"products": products, "q": q})
    return render(request, "similarity/evaluation.html",
                  {"products": products, "q": q, "coverage": embedding_coverage()})


@role_required(REVIEWER)
@require_GET
def evaluation_random_view(request: HttpRequest) -> HttpResponse:
    config = similarity_settings()
    product = evaluation_product_random(model_version=config.model_version, seed=secrets.randbits(48))
    if product is None:
        return render(request, "similarity/nothing_embedded.html", status=404)
    return redirect(f"{reverse('similarity-evaluate', args=[product.id])}?{request.GET.urlencode()}")


@role_required(REVIEWER)
@require_GET
def evaluation_product_view(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category"), pk=product_id)
    scope = choice(request.GET.get("scope"), Scope.values, Scope.LEVEL3)
    modality = choice(request.GET.get("modality"), Modality.values, Modality.IMAGE)
    result, error = None, ""
    try:
        result = product_similar_list(product=product, k=EVALUATION_K, scope=scope, modality=modality)
    except SimilarityError as exc:
        error = str(exc)
    version = evaluation_version(modality=modality)
    judged = judgement_map(query_id=product.id, scope=scope, modality=modality,
                                     model_version=version, reviewer_id=request.user.id)
    cards = [{"n": n, "state": _state(judged.get(n.product.id))} for n in (result.neighbours if result else [])]
    context = {
        "product": product, "scope": scope, "modality": modality, "result": result, "error": error,
        "cards": cards, "version": version, "scopes": Scope.choices,
        "modalities": Modality.choices,
    }
    template = "similarity/_neighbour_grid.html" if request.htmx else "similarity/evaluate.html"
    return render(request, template, context)


@role_required(REVIEWER)
@require_POST
def judgement_create_view(request: HttpRequest) -> HttpResponse:
    data = request.POST
    query = get_object_or_404(Product, pk=_int(data.get("query"), default=0, low=0, high=2**62))
    neighbour = get_object_or_404(Product, pk=_int(data.get("neighbour"), default=0, low=0, high=2**62))
    scope = data.get("scope")
    modality = data.get("modality")
    verdict = data.get("verdict")
    model_version = data.get("model_version", "").strip()
    if scope not in Scope.values or modality not in Modality.values or verdict not in ("similar", "not_similar") \
            or not model_version or len(model_version) > 100 or query.pk == neighbour.pk:
        return HttpResponse("Invalid judgement.", status=400)
    rank = _int(data.get("rank"), default=EVALUATION_K, low=1, high=200)
    judgement_record(query=query, neighbour=neighbour, scope=scope, modality=modality, model_version=model_version,
                     rank=rank, is_similar=verdict == "similar", reviewer=request.user)
    if not request.htmx:
        return redirect(f"{reverse('similarity-evaluate', args=[query.id])}?scope={scope}&modality={modality}")
    brief = product_briefs(product_ids=[neighbour.id])[neighbour.id]
    context = {"n": {"rank": rank, "product": brief, "score": _float(data.get("score"))}, "product": query,
               "scope": scope, "modality": modality, "version": model_version,
               "state": _state(verdict == "similar")}
    return render(request, "similarity/_neighbour_card.html", context)


@role_required(REVIEWER)
@require_GET
def precision_view(request: HttpRequest) -> HttpResponse:
    modality = choice(request.GET.get("modality"), Modality.values, Modality.IMAGE)
    scope = choice(request.GET.get("scope"), Scope.values, Scope.LEVEL3)
    k = _int(request.GET.get("k"), default=EVALUATION_K, low=1, high=200)
    version = evaluation_version(modality=modality)
    rows = judgement_precision_by_category(model_version=version, modality=modality, scope=scope, k=k)
    judged = sum(row.judged for row in rows)
    similar = sum(row.similar for row in rows)
    auto_scope = scope if scope != Scope.LEVEL3 else Scope.LEVEL2
    return render(request, "similarity/precision.html", {
        "rows": rows[:25], "modality": modality, "scope": scope, "k": k, "version": version,
        "judged": judged, "overall": similar / judged if judged else None, "auto_scope": auto_scope,
        "scopes": Scope.choices, "modalities": Modality.choices,
    })


@role_required(REVIEWER)
@require_GET
def precision_auto_view(request: HttpRequest) -> HttpResponse:
    modality = choice(request.GET.get("modality"), Modality.values, Modality.IMAGE)
    scope = choice(request.GET.get("scope"), [Scope.GLOBAL, Scope.LEVEL2], Scope.GLOBAL)
    sample = _int(request.GET.get("sample"), default=200, low=10, high=2000)
    report = precision_same_category_compute(modality=modality, scope=scope, k=EVALUATION_K, sample_size=sample)
    template = "similarity/_precision_auto.html" if request.htmx else "similarity/precision_auto.html"
    return render(request, template, {"report": report, "rows": report.per_category[:25]})


@role_required(REVIEWER)
@require_GET
def job_list_view(request: HttpRequest) -> HttpResponse:
    return render(request, "similarity/jobs.html", {"jobs": embedding_job_list(limit=50),
                                                    "coverage": embedding_coverage()})


@role_required(REVIEWER)
@require_GET
def job_progress_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(EmbeddingJob.objects.defer("product_ids"), pk=job_id)
    if not request.htmx:
        return render(request, "similarity/jobs.html", {"jobs": [job], "coverage": embedding_coverage()})
    response = render(request, "similarity/_job_row.html", {"job": job})
    return HttpResponseStopPolling(response.content) if job.is_finished else response


@role_required(staff=True)
@require_POST
def job_start_view(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind", "image")
    if kind == "text":
        embedding_job_start(kind="text", model_version="" if request.POST.get("refit") else None, user=request.user)
    else:
        embedding_job_start(force=bool(request.POST.get("force")), user=request.user)
    return redirect("similarity-jobs")
