"""REST endpoints under /api/v1/: they validate input, call a selector or service, and serialise."""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.catalogue import selectors
from labelapp.catalogue.models import Category, ImportKind, ImportRun, LabelStrategy, Product, RowOutcome
from labelapp.catalogue.services.import_jobs import import_job_submit
from labelapp.catalogue.services.labels import label_create
from labelapp.common.pagination import LargePagePagination, paginated_response
from labelapp.common.paths import file_name_shown, server_paths_hidden
from labelapp.common.permissions import CatalogueReader, Labeller, Reviewer, StaffReader
from labelapp.common.schema import error_responses
from labelapp.common.uploads import UploadTooLarge, upload_limit_install

logger = logging.getLogger(__name__)


class CategoryBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "external_id", "name", "full_path", "depth", "is_exclusive"]


class CategoryListApi(APIView):
    permission_classes = [CatalogueReader]
    pagination_class = LargePagePagination

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

    @extend_schema(parameters=[CategoryFilterSerializer],
                   responses={200: CategoryOutputSerializer(many=True), **error_responses(400)})
    def get(self, request):
        params = self.CategoryFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        qs = selectors.category_list(q=data["q"], exclusive=data["exclusive"], parent_id=data.get("parent"),
                                     roots_only=data["roots"], depth=data.get("depth"))
        return paginated_response(queryset=qs, serializer_class=self.CategoryOutputSerializer, request=request,
                                  view=self)


class CategoryTreeApi(APIView):
    permission_classes = [CatalogueReader]

    @extend_schema(responses=inline_serializer("CategoryTree", fields={"tree": serializers.ListField()}))
    def get(self, request):
        return Response({"tree": selectors.category_tree()})


class LabelListCreateApi(APIView):
    """List human labels (labellers, reviewers) or record one (labellers).

    A posted label's strategy is the server's: 'manual' (sending `strategy` is a 400).
    """

    pagination_class = PageNumberPagination

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
        note = serializers.CharField(required=False, default="", max_length=500, allow_blank=True)

        def validate(self, data: dict) -> dict:
            # The strategy says how a product reached the labeller, and random/import labels are the unbiased
            # evidence that measures every category source: a client must not be able to claim one.
            if "strategy" in self.initial_data:
                raise serializers.ValidationError({"strategy": "set by the server: labels made through the API "
                                                               "are 'manual'."})
            return data

    class LabelOutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        product = serializers.IntegerField(source="product_id")
        product_external_id = serializers.CharField(source="product.external_id")
        category = CategoryBriefSerializer(allow_null=True)
        labeller = serializers.CharField(source="labeller.username", allow_null=True, default=None)
        strategy = serializers.CharField(help_text="Set by the server: the sampling strategy of the queue item the "
                                                   "label was made from, 'import', or 'manual' (the API).")
        note = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(parameters=[LabelFilterSerializer],
                   responses={200: LabelOutputSerializer(many=True), **error_responses(400)})
    def get(self, request):
        params = self.LabelFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        qs = selectors.label_list(product_id=data.get("product"), labeller_id=data.get("labeller"),
                                  strategy=data["strategy"], current_only=data["current"])
        return paginated_response(queryset=qs, serializer_class=self.LabelOutputSerializer, request=request,
                                  view=self)

    @extend_schema(request=LabelInputSerializer,
                   responses={201: LabelOutputSerializer, **error_responses(400, descriptions={
                       404: "No product with that id."})})
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
                             strategy=LabelStrategy.MANUAL, note=data["note"])
        return Response(self.LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class RuleLabelListApi(APIView):
    permission_classes = [CatalogueReader]
    pagination_class = PageNumberPagination

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

    @extend_schema(parameters=[RuleLabelFilterSerializer],
                   responses={200: RuleLabelOutputSerializer(many=True), **error_responses(400)})
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
    pagination_class = PageNumberPagination

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


class ImportRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    source = serializers.CharField()
    file_name = serializers.SerializerMethodField(help_text="The imported file's name (never its server path).")
    rows_total = serializers.IntegerField()
    rows_created = serializers.IntegerField()
    rows_updated = serializers.IntegerField()
    rows_repaired = serializers.IntegerField()
    rows_rejected = serializers.IntegerField()
    images_stored = serializers.IntegerField()
    images_failed = serializers.IntegerField()
    category_report = serializers.SerializerMethodField(
        help_text="Product imports: {matched, unmatched, without_path, top_unmatched: [{path, products}] (the 10 "
                  "most frequent feed paths that matched no category), mapping (the source's mode)}; {} otherwise.")
    progress_percent = serializers.IntegerField()
    error = serializers.SerializerMethodField(help_text="Why the run failed, server paths left out.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_file_name(self, run: ImportRun) -> str:
        return file_name_shown(run.file_name)

    def get_error(self, run: ImportRun) -> str:
        return server_paths_hidden(run.error)

    def get_category_report(self, run: ImportRun) -> dict:
        return run.category_report or {}


class UploadTooLargeError(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


class ImportRunListCreateApi(APIView):
    """List import runs, or upload a file to import (products, taxonomy or rules) on the worker.

    POST answers 202 with the queued run; 400 with a message per field for a file the kind cannot read or an
    invalid mapping; 413 `{"detail": ...}` for an upload over IMPORT_UPLOAD_MAX_BYTES (refused on its
    Content-Length, or mid-stream: nothing of it is kept).
    """

    permission_classes = [Reviewer]
    pagination_class = PageNumberPagination

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":  # before anything reads the body: authentication may (the CSRF check)
            upload_limit_install(request, max_bytes=settings.IMPORT_UPLOAD_MAX_BYTES)
        return super().initialize_request(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, UploadTooLarge):
            exc = UploadTooLargeError(str(exc))
        return super().handle_exception(exc)

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

    @extend_schema(request={"multipart/form-data": ImportUploadSerializer},
                   responses={202: ImportRunSerializer, **error_responses(400, 413)})
    def post(self, request):
        payload = self.ImportUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        run = import_job_submit(kind=data["kind"], uploaded_file=data["file"], user=request.user,
                                source=data["source"], mapping_file=data["mapping"])
        return Response(ImportRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ImportIssueSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    outcome = serializers.CharField()
    reason = serializers.CharField()
    raw = serializers.CharField()


class ImportIssuePageSerializer(serializers.Serializer):
    """One page of a run's row issues (LargePagePagination's envelope)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ImportIssueSerializer(many=True)


class ImportRunDetailSerializer(ImportRunSerializer):
    issues = ImportIssuePageSerializer(help_text="The run's row issues, a page at a time (`page`, `page_size`).")


class ImportRunDetailApi(APIView):
    """One import run with its row issues (every rejected, repaired or warned row)."""

    permission_classes = [Reviewer]

    class ImportIssueFilterSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=RowOutcome.choices, required=False, default="")

    @extend_schema(parameters=[ImportIssueFilterSerializer,
                               OpenApiParameter("page", int, description="A page of the issues."),
                               OpenApiParameter("page_size", int, description="Issues per page (at most 2000).")],
                   responses={200: ImportRunDetailSerializer, **error_responses(400, descriptions={
                       404: "No import run with that id, or no such page of its issues."})})
    def get(self, request, run_id: int):
        params = self.ImportIssueFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        run = get_object_or_404(ImportRun, pk=run_id)
        issues = run.row_issues.all()
        if params.validated_data["outcome"]:
            issues = issues.filter(outcome=params.validated_data["outcome"])
        paginator = LargePagePagination()
        page = paginator.paginate_queryset(issues, request, view=self)
        body = paginator.get_paginated_response(ImportIssueSerializer(page, many=True).data).data
        return Response({**ImportRunSerializer(run).data, "issues": body})
