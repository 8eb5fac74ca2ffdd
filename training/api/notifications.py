"""Notification settings' test delivery: `POST /api/training/notifications/test-webhook/`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from training import notifications


class WebhookTestResultSerializer(serializers.Serializer):
    delivered = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True, help_text="The receiver's HTTP status (null: no answer)")
    detail = serializers.CharField()


class WebhookTestView(APIView):
    """Send a signed `test` event to the user's saved webhook now and answer what happened."""

    @extend_schema(request=None, responses={200: WebhookTestResultSerializer})
    def post(self, request: Request) -> Response:
        return Response(WebhookTestResultSerializer(notifications.send_test_webhook(request.user)).data)
