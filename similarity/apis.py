"""The shoppers' API: similar products of a product, by image, title text or both.

    GET /api/v1/products/{external_id}/similar/?k=20&scope=level2|level3|global&modality=image|text|hybrid
        [&source=…][&text_weight=0..1]

Errors are 4xx with `{"detail": …, "code": …}`:
  400 bad k / scope / modality / text_weight, or an external id present in several sources without `source`
      (the body lists them under `sources`);
  404 unknown product;
  409 `embedding_missing`: the product has no vector of the asked modality (no image, an image that failed to
      load, or not embedded yet). 409 rather than 422 because the request is well-formed and the same request
      will succeed once the product's state changes (its image is embedded); the message names the alternative
      modality. Hybrid answers by the one modality the product has (`modality_used`, `fallback` say so): 409
      only when it has neither;
  422 `scope_unavailable`: the product has no category at the scope's level (a request that cannot succeed
      until the product is categorised; scope=global always works);
  429 past the "similar" throttle rate.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from labelapp.common.permissions import SimilarReader
from labelapp.common.schema import error_responses
from similarity.models import Modality, Scope
from similarity.selectors.similar import (
    EmbeddingMissing,
    ExternalIdAmbiguous,
    Neighbour,
    ProductBrief,
    ProductNotFound,
    ScopeUnavailable,
    SimilarResult,
    product_by_external_id,
    product_similar_list,
)

EXTERNAL_ID_MAX = 255


class SimilarityApiError(exceptions.APIException):
    """A similarity error with its HTTP status, a stable `code` and optional extra fields."""

    def __init__(self, *, status_code: int, code: str, message: str, **extra):
        self.status_code = status_code
        super().__init__(detail={"detail": message, "code": code, **extra}, code=code)


def _absolute(request, url: str | None) -> str | None:
    if not url:
        return None
    return request.build_absolute_uri(url) if request else url


class SimilarCategoryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="category_id", allow_null=True)
    full_path = serializers.CharField(source="category_path")
    source = serializers.CharField(source="category_source",
                                   help_text="Where the effective category comes from: label, prediction, rule, "
                                             "feed or none.")


class SimilarProductOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    external_id = serializers.CharField()
    title = serializers.CharField()
    image_url = serializers.SerializerMethodField()
    category = SimilarCategoryOutputSerializer(source="*")

    def get_image_url(self, product: ProductBrief) -> str | None:
        return _absolute(self.context.get("request"), product.image_url)


class SimilarNeighbourOutputSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    id = serializers.IntegerField(source="product.id")
    source = serializers.CharField(source="product.source")
    external_id = serializers.CharField(source="product.external_id")
    title = serializers.CharField(source="product.title")
    image_url = serializers.SerializerMethodField()
    category = SimilarCategoryOutputSerializer(source="product")
    score = serializers.FloatField(help_text="Cosine similarity (1 - cosine distance); hybrid: the blend.")
    image_score = serializers.FloatField(allow_null=True, help_text="Hybrid only: the image cosine similarity.")
    text_score = serializers.FloatField(allow_null=True, help_text="Hybrid only: the text cosine similarity.")

    def get_image_url(self, neighbour: Neighbour) -> str | None:
        return _absolute(self.context.get("request"), neighbour.product.image_url)


class SimilarProductsApi(APIView):
    """The k products most similar to one product, within its category (level2 / level3) or the whole catalogue.

    Scopes filter by the product's effective category: its human label if any, else the active model's
    prediction, else the legacy rule's or the raw feed category. `score` is the cosine similarity (1 - cosine
    distance) of L2-normalised vectors; hybrid blends (1 - w) * image + w * text over the union of both
    modalities' candidates (w = text_weight, default SIMILARITY_HYBRID_TEXT_WEIGHT).
    """

    permission_classes = [SimilarReader]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "similar"

    class SimilarFilterSerializer(serializers.Serializer):
        k = serializers.IntegerField(
            min_value=1, max_value=200, default=20,
            error_messages={"invalid": "k must be an integer from 1 to 200.",
                            "min_value": "k must be from 1 to 200.", "max_value": "k must be from 1 to 200."},
        )
        scope = serializers.ChoiceField(
            choices=Scope.choices, default=Scope.LEVEL2,
            error_messages={"invalid_choice": f"scope must be one of {', '.join(Scope.values)}."},
        )
        modality = serializers.ChoiceField(
            choices=Modality.choices, default=Modality.IMAGE,
            error_messages={"invalid_choice": f"modality must be one of {', '.join(Modality.values)}."},
        )
        source = serializers.CharField(required=False, default="", max_length=100,
                                       help_text="Needed when the external id exists in several sources.")
        text_weight = serializers.FloatField(
            required=False, default=None, min_value=0.0, max_value=1.0,
            help_text="Hybrid only: weight of the text score (0 = image only, 1 = text only).",
            error_messages={"invalid": "text_weight must be a number from 0 to 1.",
                            "min_value": "text_weight must be from 0 to 1.",
                            "max_value": "text_weight must be from 0 to 1."},
        )

    class SimilarOutputSerializer(serializers.Serializer):
        query = SimilarProductOutputSerializer()
        k = serializers.IntegerField()
        scope = serializers.CharField()
        modality = serializers.CharField()
        model_version = serializers.CharField(help_text="Image model version ('' for modality=text).")
        text_model_version = serializers.CharField(help_text="Text model version ('' for modality=image).")
        text_weight = serializers.FloatField(allow_null=True, help_text="Hybrid only: the weight of the text score.")
        modality_used = serializers.ChoiceField(
            choices=Modality.choices,
            help_text="The modality the neighbours were found by: the one asked, or hybrid's fallback.")
        fallback = serializers.CharField(
            allow_null=True,
            help_text="Why a hybrid query was answered by one modality alone (the product has no vector of the other); "
                      "null otherwise.")
        count = serializers.SerializerMethodField()
        neighbours = SimilarNeighbourOutputSerializer(many=True)
        meta = serializers.SerializerMethodField()

        def get_count(self, result: SimilarResult) -> int:
            return len(result.neighbours)

        def get_meta(self, result: SimilarResult) -> dict:
            return {"strategy": result.trace.strategy, "ef_search": result.trace.ef_search, "cached": result.cached}

    @extend_schema(
        parameters=[SimilarFilterSerializer, OpenApiParameter("external_id", str, OpenApiParameter.PATH)],
        responses={200: SimilarOutputSerializer, **error_responses(descriptions={
            400: "Bad k / scope / modality / text_weight (a message per parameter), or an external id present in "
                 "several sources without `source` (code `external_id_ambiguous`, the sources under `sources`).",
            404: "No product with that external id.",
            409: "Code `embedding_missing`: the product has no vector of the asked modality (yet); hybrid: of either.",
            422: "Code `scope_unavailable`: the product has no category at the scope's level.",
        })},
    )
    def get(self, request, external_id: str):
        params = self.SimilarFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if "\x00" in external_id or len(external_id) > EXTERNAL_ID_MAX:
            raise exceptions.NotFound(f"no product with external id {external_id[:80]!r}")
        try:
            product = product_by_external_id(external_id=external_id, source=data["source"])
            result = product_similar_list(product=product, k=data["k"], scope=data["scope"],
                                                    modality=data["modality"], text_weight=data["text_weight"])
        except ProductNotFound as exc:
            raise exceptions.NotFound(str(exc)) from None
        except ExternalIdAmbiguous as exc:
            raise SimilarityApiError(status_code=status.HTTP_400_BAD_REQUEST, code=exc.code, message=str(exc),
                                     sources=exc.sources) from None
        except EmbeddingMissing as exc:
            raise SimilarityApiError(status_code=status.HTTP_409_CONFLICT, code=exc.code, message=str(exc)) from None
        except ScopeUnavailable as exc:
            raise SimilarityApiError(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, code=exc.code,
                                     message=str(exc)) from None
        return Response(self.SimilarOutputSerializer(result, context={"request": request}).data)
