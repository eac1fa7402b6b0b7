"""REST endpoints under /api/v1/: they validate input, call a selector or service, and serialise."""

from __future__ import annotations

import logging

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.catalogue import selectors
from labelapp.catalogue.models import Category, ImportKind, ImportRun, LabelStrategy, Product, RowOutcome
from labelapp.catalogue.services.import_jobs import import_job_submit
from labelapp.catalogue.services.labels import label_create
from labelapp.common.pagination import LargePagePagination, paginated_response
from labelapp.common.permissions import CatalogueReader, Labeller, Reviewer, StaffReader

logger = logging.getLogger(__name__)


class CategoryBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "external_id", "name", "full_path", "depth", "is_exclusive"]


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
