"""REST endpoints for reviewers: start training runs, read runs, their metrics and the model versions."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier.core.names import ARCHITECTURE_NAMES, OBJECTIVES
from classifier.models import TrainStatus
from classifier.selectors.runs import train_run_get, train_run_list
from classifier.selectors.versions import model_version_list
from classifier.services.promotion import PromotionRefused, model_version_promote, train_run_promote_forced
from classifier.services.runs import train_run_create
from labelapp.common.pagination import paginated_response
from labelapp.common.paths import server_paths_hidden
from labelapp.common.permissions import Reviewer
from labelapp.common.schema import error_responses


class TrainRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    stage = serializers.CharField()
    progress_percent = serializers.IntegerField()
    progress_message = serializers.CharField()
    architecture = serializers.CharField()
    objectives = serializers.ListField(child=serializers.CharField())
    params = serializers.JSONField()
    trigger = serializers.CharField()
    requested_by = serializers.CharField(source="requested_by.username", allow_null=True, default=None)
    promote = serializers.BooleanField()
    max_regression = serializers.FloatField(allow_null=True)
    outcome = serializers.CharField(help_text="promoted | blocked | forced | regression | not_requested | '' "
                                              "(not decided)")
    promotion_reason = serializers.CharField(help_text="Why the guard promoted the version or kept the active one.")
    data_counts = serializers.JSONField()
    timings = serializers.JSONField()
    error = serializers.SerializerMethodField(help_text="Why the run failed (with its traceback), server paths "
                                                        "made relative.")
    model_version = serializers.SerializerMethodField()
    headline = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_error(self, run) -> str:
        return server_paths_hidden(run.error)

    def get_model_version(self, run) -> str | None:
        version = getattr(run, "model_version", None)
        return version.name if version else None

    def get_headline(self, run) -> dict | None:
        version = getattr(run, "model_version", None)
        return {"metric": version.headline_metric, "value": version.headline_value} if version else None


class TrainRunDetailSerializer(TrainRunSerializer):
    metrics = serializers.JSONField(help_text="'ground_truth' and 'rule_test' reports: overall, per level, "
                                              "per category, most confused pairs; 'calibration' (temperature, "
                                              "ECE before/after, reliability bins); 'promotion' (the guard's "
                                              "test, counts, p-value, catalogue accuracy before and after).")
    history = serializers.JSONField(help_text="Per-epoch losses.")
    feature_config = serializers.CharField()


class TrainRunListCreateApi(APIView):
    permission_classes = [Reviewer]
    pagination_class = PageNumberPagination

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=TrainStatus.choices, required=False, default="")
        trigger = serializers.CharField(required=False, default="", max_length=20)

    class InputSerializer(serializers.Serializer):
        architecture = serializers.ChoiceField(choices=ARCHITECTURE_NAMES, required=False, allow_null=True)
        objectives = serializers.ListField(child=serializers.ChoiceField(choices=OBJECTIVES), min_length=1,
                                           max_length=2, default=["exclusive"])
        epochs = serializers.IntegerField(min_value=1, max_value=200, required=False)
        batch_size = serializers.IntegerField(min_value=1, max_value=8192, required=False)
        learning_rate = serializers.FloatField(min_value=1e-6, max_value=1.0, required=False)
        loss_weights = serializers.DictField(child=serializers.FloatField(min_value=0), required=False)
        promote = serializers.BooleanField(default=True)
        max_regression = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)

    @extend_schema(parameters=[FilterSerializer],
                   responses={200: TrainRunSerializer(many=True), **error_responses(400)})
    def get(self, request):
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return paginated_response(queryset=train_run_list(**params.validated_data),
                                  serializer_class=TrainRunSerializer, request=request, view=self)

    @extend_schema(request=InputSerializer, responses={202: TrainRunSerializer, **error_responses(400)})
    def post(self, request):
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        params = {name: data[name] for name in ("epochs", "batch_size", "learning_rate", "loss_weights") if name in data}
        with transaction.atomic():
            run = train_run_create(architecture=data.get("architecture"), objectives=data["objectives"], params=params,
                                   promote=data["promote"], max_regression=data.get("max_regression"),
                                   user=request.user, trigger="api")
        return Response(TrainRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainRunDetailApi(APIView):
    permission_classes = [Reviewer]

    @extend_schema(responses={200: TrainRunDetailSerializer, **error_responses(404)})
    def get(self, request, train_run_id: int):
        return Response(TrainRunDetailSerializer(train_run_get(train_run_id=train_run_id)).data)


class ModelVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    train_run = serializers.IntegerField(source="train_run_id")
    architecture = serializers.CharField()
    objectives = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    headline_metric = serializers.CharField()
    headline_value = serializers.FloatField(allow_null=True)
    temperature = serializers.FloatField(help_text="The exclusive head's calibration (temperature scaling).")
    precision_measured = serializers.BooleanField(
        help_text="Calibrated on enough human labels for its confidence to compete with the rules and the feed.")
    classes = serializers.SerializerMethodField(help_text="Number of exclusive classes.")
    rule_classes = serializers.SerializerMethodField(help_text="Number of rule classes.")
    predictions_count = serializers.IntegerField()
    has_artefact = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)

    def get_classes(self, version) -> int:
        return len(version.classes)

    def get_rule_classes(self, version) -> int:
        return len(version.rule_classes)

    def get_has_artefact(self, version) -> bool:
        return bool(version.artefact_path)


class ModelVersionListApi(APIView):
    permission_classes = [Reviewer]
    pagination_class = PageNumberPagination

    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request):
        return paginated_response(queryset=model_version_list(), serializer_class=ModelVersionSerializer,
                                  request=request, view=self)


class ModelVersionActivateApi(APIView):
    """Make an earlier version active again (a rollback): its predictions become the products' categories."""

    permission_classes = [Reviewer]

    @extend_schema(request=None, responses={200: ModelVersionSerializer, **error_responses(404, descriptions={
        409: "The version was pruned (no artefact or predictions left): train a new one instead."})})
    def post(self, request, version_id: int):
        version = model_version_list().get(id=version_id)
        if not version.artefact_path or not version.predictions_count:
            return Response({"detail": f"model version {version.name} was pruned (no artefact or predictions "
                                       f"left); train a new one instead"}, status=status.HTTP_409_CONFLICT)
        model_version_promote(version=version, force=True)
        version.refresh_from_db()
        return Response(ModelVersionSerializer(version).data)


class TrainRunPromoteApi(APIView):
    """Promote a run's version that the guard kept out, on a reviewer's word; the decision is recorded on the run."""

    permission_classes = [Reviewer]

    @extend_schema(request=None, responses={200: TrainRunDetailSerializer, **error_responses(404, descriptions={
        409: "The run has no version that can be promoted (it failed, or its artefact and predictions were "
             "pruned)."})})
    def post(self, request, train_run_id: int):
        run = train_run_get(train_run_id=train_run_id)
        try:
            train_run_promote_forced(run=run, user=request.user)
        except PromotionRefused as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(TrainRunDetailSerializer(train_run_get(train_run_id=train_run_id)).data)
