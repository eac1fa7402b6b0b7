"""REST endpoints under /api/v1/: they validate input, call a selector or service, and serialise."""

from __future__ import annotations

import logging

from django.core.exceptions import ObjectDoesNotExist, ValidationError as DjangoValidationError
from django.db import connection
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from labelapp import selectors
from labelapp.models import Category, ImportKind, ImportRun, LabelStrategy, Product, RowOutcome, Split
from labelapp.permissions import CatalogueReader, Labeller, Reviewer, StaffReader
from labelapp.services.import_jobs import import_job_submit
from labelapp.services.labels import label_create

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Turn domain errors into 4xx responses with a message; DRF's handler does the rest."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    return drf_exception_handler(exc, context)


class ProductCursorPagination(CursorPagination):
    """Cursor pages: stable under inserts and no COUNT(*) over millions of rows."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def paginated_response(*, queryset, serializer_class, request, view, paginator=None) -> Response:
    """Return one page of `queryset`, serialised, with DRF's page links."""
    paginator = paginator or PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)


class LargePagePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 2000


class CategoryBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "external_id", "name", "full_path", "depth", "is_exclusive"]


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


def prediction_context(*, products) -> dict:
    """Return serializer context with the active version's predictions of `products` and their categories."""
    from classifier.selectors import prediction_categories, predictions_for_products

    predictions = predictions_for_products(product_ids=[product.id for product in products])
    return {"predictions": predictions, "categories": prediction_categories(predictions=predictions.values())}


class ProductSerializer(serializers.ModelSerializer):
    category = CategoryBriefSerializer(read_only=True)
    image_url = serializers.SerializerMethodField()
    is_labelled = serializers.BooleanField(read_only=True)
    prediction = serializers.SerializerMethodField(help_text="The active model's prediction (null before the "
                                                             "first trained model).")

    class Meta:
        model = Product
        fields = [
            "id", "source", "external_id", "title", "description", "brand", "category_path", "gender", "size",
            "price", "currency", "attributes", "image_url", "image_error", "split", "category",
            "category_source", "is_labelled", "prediction", "created_at", "updated_at",
        ]

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, product: Product) -> dict | None:
        if "predictions" not in self.context:
            self.context.update(prediction_context(products=[product]))
        prediction = self.context["predictions"].get(product.id)
        return PredictionSerializer(prediction, context=self.context).data if prediction else None

    def get_image_url(self, product: Product) -> str | None:
        if not product.image:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(product.image.url) if request else product.image.url


class ProductListApi(APIView):
    permission_classes = [CatalogueReader]

    class ProductFilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, default="", max_length=200)
        category = serializers.IntegerField(required=False, min_value=1,
                                            help_text="A category id: products anywhere in its subtree.")
        source = serializers.CharField(required=False, default="", max_length=100)
        labelled = serializers.BooleanField(required=False, allow_null=True, default=None)
        split = serializers.ChoiceField(choices=Split.choices, required=False, default="")
        has_image = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(parameters=[ProductFilterSerializer], responses=ProductSerializer(many=True))
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
        paginator = ProductCursorPagination()
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

    @extend_schema(responses=ProductDetailSerializer)
    def get(self, request, product_id: int):
        product = selectors.product_detail(product_id=product_id)
        product.is_labelled = bool(product.labels.all())
        return Response(ProductDetailSerializer(product, context={"request": request}).data)


class CategoryListApi(APIView):
    permission_classes = [CatalogueReader]

    class CategoryFilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, default="", max_length=200)
        exclusive = serializers.BooleanField(required=False, allow_null=True, default=None)
        parent = serializers.IntegerField(required=False, min_value=1)
        roots = serializers.BooleanField(required=False, default=False)
        depth = serializers.IntegerField(required=False, min_value=1, max_value=20)

    class CategoryOutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Category
            fields = ["id", "external_id", "name", "full_path", "parent", "depth", "is_exclusive", "is_leaf",
                      "level2", "level3"]

    @extend_schema(parameters=[CategoryFilterSerializer], responses=CategoryOutputSerializer(many=True))
    def get(self, request):
        params = self.CategoryFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        qs = selectors.category_list(q=data["q"], exclusive=data["exclusive"], parent_id=data.get("parent"),
                                     roots_only=data["roots"], depth=data.get("depth"))
        return paginated_response(queryset=qs, serializer_class=self.CategoryOutputSerializer, request=request,
                                  view=self, paginator=LargePagePagination())


class CategoryTreeApi(APIView):
    permission_classes = [CatalogueReader]

    @extend_schema(responses=inline_serializer("CategoryTree", fields={"tree": serializers.ListField()}))
    def get(self, request):
        return Response({"tree": selectors.category_tree()})


class LabelListCreateApi(APIView):
    """List human labels (labellers, reviewers) or record one (labellers)."""

    def get_permissions(self):
        return [Labeller()] if self.request.method == "POST" else [StaffReader()]

    class LabelFilterSerializer(serializers.Serializer):
        product = serializers.IntegerField(required=False, min_value=1)
        labeller = serializers.IntegerField(required=False, min_value=1)
        strategy = serializers.ChoiceField(choices=LabelStrategy.choices, required=False, default="")
        current = serializers.BooleanField(required=False, default=False,
                                           help_text="Only each product's current (newest) label.")

    class LabelInputSerializer(serializers.Serializer):
        product = serializers.IntegerField(min_value=1)
        category = serializers.IntegerField(min_value=1, allow_null=True,
                                            help_text="An exclusive category id; null means none fits.")
        strategy = serializers.ChoiceField(choices=LabelStrategy.choices, default=LabelStrategy.MANUAL)
        note = serializers.CharField(required=False, default="", max_length=500, allow_blank=True)

    class LabelOutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        product = serializers.IntegerField(source="product_id")
        product_external_id = serializers.CharField(source="product.external_id")
        category = CategoryBriefSerializer(allow_null=True)
        labeller = serializers.CharField(source="labeller.username", allow_null=True, default=None)
        strategy = serializers.CharField()
        note = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(parameters=[LabelFilterSerializer], responses=LabelOutputSerializer(many=True))
    def get(self, request):
        params = self.LabelFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        qs = selectors.label_list(product_id=data.get("product"), labeller_id=data.get("labeller"),
                                  strategy=data["strategy"], current_only=data["current"])
        return paginated_response(queryset=qs, serializer_class=self.LabelOutputSerializer, request=request,
                                  view=self)

    @extend_schema(request=LabelInputSerializer, responses={201: LabelOutputSerializer})
    def post(self, request):
        payload = self.LabelInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        product = get_object_or_404(Product, pk=data["product"])
        category = None
        if data["category"] is not None:
            category = Category.objects.filter(pk=data["category"]).first()
            if category is None:
                raise exceptions.ValidationError({"category": f"no category with id {data['category']}"})
        label = label_create(product=product, category=category, user=request.user,
                             strategy=data["strategy"], note=data["note"])
        return Response(self.LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class RuleLabelListApi(APIView):
    permission_classes = [CatalogueReader]

    class RuleLabelFilterSerializer(serializers.Serializer):
        product = serializers.IntegerField(required=False, min_value=1)
        category = serializers.IntegerField(required=False, min_value=1)
        rule = serializers.IntegerField(required=False, min_value=1)

    class RuleLabelOutputSerializer(serializers.Serializer):
        product = serializers.IntegerField(source="product_id")
        product_external_id = serializers.CharField(source="product.external_id")
        category = CategoryBriefSerializer()
        rule_id = serializers.IntegerField()
        rule_name = serializers.CharField(source="rule.name")
        created_at = serializers.DateTimeField()

    @extend_schema(parameters=[RuleLabelFilterSerializer], responses=RuleLabelOutputSerializer(many=True))
    def get(self, request):
        params = self.RuleLabelFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        qs = selectors.rule_label_list(product_id=data.get("product"), category_id=data.get("category"),
                                       rule_id=data.get("rule"))
        return paginated_response(queryset=qs, serializer_class=self.RuleLabelOutputSerializer, request=request,
                                  view=self)


class RuleListApi(APIView):
    permission_classes = [Reviewer]

    class RuleOutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        category = CategoryBriefSerializer()
        conditions = serializers.JSONField()
        combinator = serializers.CharField()
        active = serializers.BooleanField()
        origin = serializers.CharField()
        n_labels = serializers.IntegerField()

    @extend_schema(responses=RuleOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(queryset=selectors.rule_list(), serializer_class=self.RuleOutputSerializer,
                                  request=request, view=self)


def broker_ping() -> str | None:
    """Return None when the broker answers, else the error text."""
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()
    except Exception as exc:  # any failure means "down"; the text goes into the health report
        return f"{type(exc).__name__}: {exc}"
    return None


class HealthApi(APIView):
    """Liveness of the database and the broker: 200 when both answer, 503 otherwise."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=inline_serializer("Health", fields={
        "status": serializers.CharField(), "database": serializers.CharField(), "broker": serializers.CharField()}))
    def get(self, request):
        checks = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}: {exc}"
        broker_error = broker_ping()
        checks["broker"] = "ok" if broker_error is None else f"error: {broker_error}"
        healthy = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if healthy else "degraded", **checks},
                        status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)


class ImportRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    source = serializers.CharField()
    file_name = serializers.CharField()
    rows_total = serializers.IntegerField()
    rows_created = serializers.IntegerField()
    rows_updated = serializers.IntegerField()
    rows_repaired = serializers.IntegerField()
    rows_rejected = serializers.IntegerField()
    images_stored = serializers.IntegerField()
    images_failed = serializers.IntegerField()
    progress_percent = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ImportRunListCreateApi(APIView):
    """List import runs, or upload a file to import (products, taxonomy or rules) on the worker."""

    permission_classes = [Reviewer]

    class ImportUploadSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=ImportKind.choices)
        file = serializers.FileField()
        source = serializers.CharField(required=False, default="", max_length=100, allow_blank=True)
        mapping = serializers.FileField(required=False, allow_null=True, default=None,
                                        help_text="A TOML mapping (product imports only).")

    @extend_schema(responses=ImportRunSerializer(many=True))
    def get(self, request):
        return paginated_response(queryset=selectors.import_run_list(), serializer_class=ImportRunSerializer,
                                  request=request, view=self)

    @extend_schema(request={"multipart/form-data": ImportUploadSerializer}, responses={202: ImportRunSerializer})
    def post(self, request):
        payload = self.ImportUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        run = import_job_submit(kind=data["kind"], uploaded_file=data["file"], user=request.user,
                                source=data["source"], mapping_file=data["mapping"])
        return Response(ImportRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ImportRunDetailApi(APIView):
    """One import run with its row issues (every rejected, repaired or warned row)."""

    permission_classes = [Reviewer]

    class ImportIssueSerializer(serializers.Serializer):
        line = serializers.IntegerField()
        outcome = serializers.CharField()
        reason = serializers.CharField()
        raw = serializers.CharField()

    class ImportIssueFilterSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=RowOutcome.choices, required=False, default="")

    @extend_schema(parameters=[ImportIssueFilterSerializer], responses=ImportRunSerializer)
    def get(self, request, run_id: int):
        params = self.ImportIssueFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        run = get_object_or_404(ImportRun, pk=run_id)
        issues = run.row_issues.all()
        if params.validated_data["outcome"]:
            issues = issues.filter(outcome=params.validated_data["outcome"])
        paginator = LargePagePagination()
        page = paginator.paginate_queryset(issues, request, view=self)
        body = paginator.get_paginated_response(self.ImportIssueSerializer(page, many=True).data).data
        return Response({**ImportRunSerializer(run).data, "issues": body})
