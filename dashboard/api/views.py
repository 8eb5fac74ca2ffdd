"""Service endpoints: health, the test notification, and the user's dashboard statistics and analytics."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard import health, services

from . import serializers as s


class HealthView(APIView):
    """Database, Redis and Celery workers; 200 when all are up, 503 otherwise."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.ChoiceField(choices=["ok", "degraded"]),
                "database": serializers.BooleanField(),
                "redis": serializers.BooleanField(),
                "workers": serializers.IntegerField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        h = health.get_health()
        body = {"status": h.status, "database": h.database, "redis": h.redis, "workers": h.workers}
        code = status.HTTP_200_OK if h.database and h.redis else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status=code)


class TestNotificationView(APIView):
    """Ask a Celery worker to send a notification back to this user's open sockets."""

    @extend_schema(request=None, responses={202: inline_serializer("Queued", {"nonce": serializers.CharField()})})
    def post(self, request: Request) -> Response:
        nonce = services.request_test_notification(request.user.pk)
        return Response({"nonce": nonce}, status=status.HTTP_202_ACCEPTED)


class StatsView(APIView):
    """The signed-in user's dashboard: counts, jobs by status, running and recent jobs, success rate, quotas."""

    @extend_schema(responses=s.StatsSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            services.cached_for_user(
                "stats",
                user.pk,
                settings.DASHBOARD_STATS_CACHE_S,
                lambda: s.StatsSerializer(services.stats(user)).data,
            )
        )


class AnalyticsView(APIView):
    """The signed-in user's charts over the last `days` days: jobs and training hours per day, success rate and
    final loss by method."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "days",
                {"type": "integer", "minimum": 1, "maximum": 365},
                description="Window in days, 1-365 (default 30).",
            )
        ],
        responses=s.AnalyticsSerializer,
    )
    def get(self, request: Request) -> Response:
        days = services.parse_days(request.query_params.get("days"))
        user = request.user
        return Response(
            services.cached_for_user(
                f"analytics:{days}",
                user.pk,
                settings.DASHBOARD_ANALYTICS_CACHE_S,
                lambda: s.AnalyticsSerializer(services.analytics(user, days=days)).data,
            )
        )
