"""Datasets API entry points (every queryset scoped to the requesting user: other users' ids answer 404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from datasets_app import files, quotas, services, versions
from datasets_app.models import Dataset

from . import serializers as s
from .parsers import StrictMultiPartParser


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Upload, inspect, preprocess, split, download and delete datasets."""

    serializer_class = s.DatasetSerializer
    parser_classes = [JSONParser, StrictMultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Dataset]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return Dataset.objects.none()
        qs = versions.owned_datasets(self.request.user)
        # A list never shows the stored validation reports (large; served by <id>/report/).
        return qs.defer("report") if self.action == "list" else qs

    def count_queryset(self) -> QuerySet[Dataset]:
        """The listed rows without the lineage annotations (what the paginator counts)."""
        return Dataset.objects.filter(owner=self.request.user)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Refuse an oversize upload from its declared length, before the body is read.
        if self.action == "create":
            length = int(request.META.get("CONTENT_LENGTH") or 0)
            if length:
                quotas.check_upload_size_early(request.user, length)

    @extend_schema(request={"multipart/form-data": s.DatasetUploadSerializer}, responses={201: s.DatasetSerializer})
    def create(self, request: Request) -> Response:
        uploads = request.FILES.getlist("file")
        dataset = services.create_dataset(
            owner=request.user,
            uploads=uploads,
            name=request.data.get("name"),
            fmt=request.data.get("format"),
            column_mapping=request.data.get("column_mapping"),
        )
        return Response(s.DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.DatasetUpdateSerializer, responses=s.DatasetSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = s.DatasetUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        dataset = services.update_dataset(
            self.get_object(),
            name=v.get("name"),
            fmt=v.get("format"),
            column_mapping=v.get("column_mapping"),
            mapping_given="column_mapping" in v,
        )
        return Response(s.DatasetSerializer(dataset).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        files.delete_dataset(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str) -> Response:
        """The stored validation report (409 while processing)."""
        return Response(services.get_report(self.get_object()))

    @extend_schema(request=s.ValidateSerializer, responses={202: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str) -> Response:
        """Re-run validation, optionally with another base model's tokenizer, max length, format or mapping."""
        data = s.ValidateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        dataset = services.revalidate(
            self.get_object(),
            base_model=v.get("base_model"),
            max_length=v.get("max_length"),
            fmt=v.get("format"),
            column_mapping=v.get("column_mapping"),
            mapping_given="column_mapping" in v,
        )
        return Response(s.DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("offset", {"type": "integer", "minimum": 0}, description="First row (default 0)"),
            OpenApiParameter(
                "limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="Rows, 1-100 (default 20)"
            ),
            OpenApiParameter(
                "base_model",
                {"type": "integer", "minimum": 1},
                description="An id from GET /api/models/base/ that you may use (default: the one "
                "chosen for validation, else the embedded model).",
            ),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str) -> Response:
        """Rows rendered as the model sees them, trained spans marked."""
        try:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            return Response({"detail": "offset and limit must be integers.", "errors": {}}, status=400)
        return Response(
            services.get_preview(
                self.get_object(),
                offset=offset,
                limit=limit,
                base_model=request.query_params.get("base_model") or None,
            )
        )

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def statistics(self, request: Request, pk: str) -> Response:
        return Response(services.get_statistics(self.get_object()))

    @extend_schema(request=s.PreprocessSerializer, responses={202: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def preprocess(self, request: Request, pk: str) -> Response:
        """Make a new version by applying preprocessing steps (the original is kept)."""
        data = s.PreprocessSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        child = versions.preprocess(
            self.get_object(), steps=data.validated_data["steps"], name=data.validated_data.get("name") or None
        )
        return Response(s.DatasetSerializer(child).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.SplitSerializer, responses={202: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def split(self, request: Request, pk: str) -> Response:
        """Make a new version with train and validation files."""
        data = s.SplitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        child = versions.split(self.get_object(), **data.validated_data)
        return Response(s.DatasetSerializer(child).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=s.DatasetSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, pk: str) -> Response:
        return Response(s.DatasetSerializer(versions.versions(self.get_object()), many=True).data)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The version's one file, as uploaded"
            ),
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A version of several files: a zip of them"
            ),
            302: OpenApiResponse(description="S3: a short-lived presigned URL of the file"),
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> HttpResponseBase:
        dataset = self.get_object()
        direct = files.direct_download_url(dataset)
        if direct:  # S3: the bytes come from the bucket, not through the web tier
            return HttpResponseRedirect(direct)
        fh, filename = files.open_download(dataset)
        # The user's own bytes: never sniffed or rendered by a browser (a .json or .csv upload is not served as one).
        kind = "application/zip" if dataset.files.count() > 1 else "application/octet-stream"
        return FileResponse(fh, as_attachment=True, filename=filename, content_type=kind)
