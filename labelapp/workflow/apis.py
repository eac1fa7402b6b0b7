"""REST endpoints that span the catalogue and the classifier: products with the active model's prediction."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier.selectors.predictions import prediction_categories, predictions_for_products
from labelapp.catalogue import selectors
from labelapp.catalogue.apis import CategoryBriefSerializer
from labelapp.catalogue.models import Category, Product, Split
from labelapp.catalogue.selectors import category_evidence
from labelapp.common.pagination import ProductCursorPagination
from labelapp.common.permissions import CatalogueReader
from labelapp.common.schema import error_responses


class PredictionSerializer(serializers.Serializer):
    """The active model version's prediction for a product."""

    model_version = serializers.CharField(source="model_version.name")
    category = CategoryBriefSerializer(allow_null=True, help_text="Top-1 exclusive category.")
    confidence = serializers.FloatField(allow_null=True)
    top_k = serializers.SerializerMethodField(help_text="The top exclusive categories, best first.")
    entropy = serializers.FloatField(allow_null=True)
    margin = serializers.FloatField(allow_null=True)
    rule_positives = serializers.SerializerMethodField(help_text="Categories the rule head predicts.")

    def _categories(self) -> dict:
        return self.context.get("categories") or {}

    def _brief(self, category_id: int) -> dict:
        category = self._categories().get(category_id)
        return {"id": category_id, "full_path": category.full_path if category else None}

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_top_k(self, prediction) -> list[dict]:
        return [{**self._brief(category_id), "probability": probability}
                for category_id, probability in prediction.top_k]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_rule_positives(self, prediction) -> list[dict]:
        return [self._brief(category_id) for category_id in prediction.rule_positives]


class CategoryEvidenceSerializer(serializers.Serializer):
    """Which source gave the product its category, and the estimate behind it."""

    source = serializers.CharField(help_text="label | prediction | rule | feed | none")
    source_label = serializers.CharField(help_text="The source in words (which rule, which feed).")
    precision = serializers.FloatField(allow_null=True, help_text="Its estimated precision (null: a human label, "
                                                                  "or not measured yet).")
    low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval of the measured rate.")
    high = serializers.FloatField(allow_null=True)
    labelled = serializers.IntegerField(allow_null=True, help_text="Labelled products it was measured on.")


def prediction_context(*, products) -> dict:
    """Return serializer context with the active version's predictions of `products` and their categories."""
    predictions = predictions_for_products(product_ids=[product.id for product in products])
    return {"predictions": predictions, "categories": prediction_categories(predictions=predictions.values()),
            "evidence": category_evidence(products=list(products))}


class ProductSerializer(serializers.ModelSerializer):
    category = CategoryBriefSerializer(read_only=True, allow_null=True,
                                       help_text="The effective category (null: no source gives one).")
    image_url = serializers.SerializerMethodField()
    is_labelled = serializers.BooleanField(read_only=True)
    prediction = serializers.SerializerMethodField(help_text="The active model's prediction (null before the "
                                                             "first trained model).")
    category_evidence = serializers.SerializerMethodField(help_text="The source that won and its estimate.")

    class Meta:
        model = Product
        fields = [
            "id", "source", "external_id", "title", "description", "brand", "category_path", "gender", "size",
            "price", "currency", "attributes", "image_url", "image_error", "split", "category",
            "category_source", "category_evidence", "is_labelled", "prediction", "created_at", "updated_at",
        ]

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, product: Product) -> dict | None:
        if "predictions" not in self.context:
            self.context.update(prediction_context(products=[product]))
        prediction = self.context["predictions"].get(product.id)
        return PredictionSerializer(prediction, context=self.context).data if prediction else None

    @extend_schema_field(CategoryEvidenceSerializer)
    def get_category_evidence(self, product: Product) -> dict:
        if "evidence" not in self.context:
            self.context.update(prediction_context(products=[product]))
        return CategoryEvidenceSerializer(self.context["evidence"][product.id]).data

    def get_image_url(self, product: Product) -> str | None:
        if not product.image:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(product.image.url) if request else product.image.url


class ProductListApi(APIView):
    permission_classes = [CatalogueReader]
    pagination_class = ProductCursorPagination

    class ProductFilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, default="", max_length=200)
        category = serializers.IntegerField(required=False, min_value=1,
                                            help_text="A category id: products anywhere in its subtree.")
        source = serializers.CharField(required=False, default="", max_length=100)
        labelled = serializers.BooleanField(required=False, allow_null=True, default=None)
        split = serializers.ChoiceField(choices=Split.choices, required=False, default="")
        has_image = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(parameters=[ProductFilterSerializer],
                   responses={200: ProductSerializer(many=True), **error_responses(400)})
    def get(self, request):
        params = self.ProductFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if data.get("category") is not None and not Category.objects.filter(pk=data["category"]).exists():
            raise exceptions.ValidationError({"category": f"no category with id {data['category']}"})
        filters = selectors.ProductFilters(
            q=data["q"], category_id=data.get("category"), source=data["source"],
            labelled=data["labelled"], split=data["split"], has_image=data["has_image"],
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.product_list(filters=filters), request, view=self)
        context = {"request": request, **prediction_context(products=page)}
        return paginator.get_paginated_response(ProductSerializer(page, many=True, context=context).data)


class RuleLabelBriefSerializer(serializers.Serializer):
    category = CategoryBriefSerializer()
    rule_id = serializers.IntegerField()
    rule_name = serializers.CharField(source="rule.name")


class LabelBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    category = CategoryBriefSerializer(allow_null=True)
    labeller = serializers.CharField(source="labeller.username", allow_null=True, default=None)
    strategy = serializers.CharField()
    created_at = serializers.DateTimeField()


class ProductDetailSerializer(ProductSerializer):
    raw = serializers.JSONField()
    rule_labels = RuleLabelBriefSerializer(many=True)
    labels = LabelBriefSerializer(many=True, help_text="Every human label, newest (current) first.")

    class Meta(ProductSerializer.Meta):
        fields = [*ProductSerializer.Meta.fields, "raw", "rule_labels", "labels"]


class ProductDetailApi(APIView):
    permission_classes = [CatalogueReader]

    @extend_schema(responses={200: ProductDetailSerializer, **error_responses(404)})
    def get(self, request, product_id: int):
        product = selectors.product_detail(product_id=product_id)
        product.is_labelled = bool(product.labels.all())
        return Response(ProductDetailSerializer(product, context={"request": request}).data)
