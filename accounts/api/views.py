"""Accounts API entry points: parse, call one service, render."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login, logout, update_session_auth_hash
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import quotas, services, signin
from accounts.models import ApiToken

from . import serializers as s
from .throttles import LoginIPThrottle, LoginUsernameThrottle, RegisterIPThrottle, throttled_message

_detail = inline_serializer("Detail", {"detail": serializers.CharField()})


class CsrfView(APIView):
    """Sets the CSRF cookie the browser app sends back as X-CSRFToken."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses=inline_serializer("Csrf", {"csrfToken": serializers.CharField()}))
    @method_decorator(ensure_csrf_cookie)
    def get(self, request: Request) -> Response:
        return Response({"csrfToken": get_token(request)})


@method_decorator(csrf_protect, name="dispatch")
class RegisterView(APIView):
    """Create an account and sign it in."""

    permission_classes = [AllowAny]
    throttle_classes = [RegisterIPThrottle]

    @extend_schema(request=s.RegisterSerializer, responses={201: s.UserSerializer})
    def post(self, request: Request) -> Response:
        data = s.RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.register_user(**data.validated_data)
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


@method_decorator(csrf_protect, name="dispatch")
class LoginView(APIView):
    """Sign in with username and password (throttled per IP and per username; a run of failures locks that username
    from that address only, whether or not the account exists)."""

    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle, LoginUsernameThrottle]

    @extend_schema(request=s.LoginSerializer, responses={200: s.UserSerializer, 400: _detail, 429: _detail})
    def post(self, request: Request) -> Response:
        data = s.LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = signin.sign_in(request=request._request, **data.validated_data)
        except signin.TooManyAttempts as exc:
            return Response(
                {"detail": exc.message, "errors": {}},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(exc.retry_after)},
            )
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(s.UserSerializer(user).data)

    def throttled(self, request: Request, wait: float | None) -> None:
        from rest_framework.exceptions import Throttled

        raise Throttled(wait=wait, detail=throttled_message(wait))


class LogoutView(APIView):
    """End the session."""

    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """The signed-in user; PATCH edits the profile."""

    @extend_schema(responses=s.UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(s.UserSerializer(request.user).data)

    @extend_schema(request=s.ProfileUpdateSerializer, responses=s.UserSerializer)
    def patch(self, request: Request) -> Response:
        data = s.ProfileUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = services.update_profile(request.user, **data.validated_data)
        return Response(s.UserSerializer(user).data)


class MeQuotasView(APIView):
    """The signed-in user's quotas, current usage, what is left and when the monthly quotas reset."""

    @extend_schema(responses=s.QuotaSummarySerializer)
    def get(self, request: Request) -> Response:
        return Response(quotas.summary(request.user))


class ChangePasswordView(APIView):
    """Change the password (keeps this session signed in)."""

    @extend_schema(request=s.ChangePasswordSerializer, responses={200: _detail})
    def post(self, request: Request) -> Response:
        data = s.ChangePasswordSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.change_password(request.user, **data.validated_data)
        update_session_auth_hash(request._request, request.user)
        return Response({"detail": "Password changed."})


class HfTokenView(APIView):
    """The user's Hugging Face token: write-only; GET tells only whether one is stored and its last 4 characters."""

    @extend_schema(responses=s.HfTokenStatusSerializer)
    def get(self, request: Request) -> Response:
        st = services.hf_token_status(request.user)
        return Response({"present": st.present, "last4": st.last4, "hf_username": st.hf_username})

    @extend_schema(
        request=s.HfTokenInSerializer,
        responses={200: s.HfTokenSavedSerializer, 400: _detail, 502: OpenApiResponse(description="Hub unreachable")},
    )
    def post(self, request: Request) -> Response:
        data = s.HfTokenInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        st = services.save_hf_token(request.user, token=data.validated_data["token"])
        return Response({"valid": True, "hf_username": st.hf_username, "last4": st.last4})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        services.delete_hf_token(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WandbKeyView(APIView):
    """The user's Weights & Biases API key (experiment tracking): write-only; GET tells only whether one is stored
    and its last 4 characters."""

    @extend_schema(responses=s.WandbKeyStatusSerializer)
    def get(self, request: Request) -> Response:
        st = services.wandb_key_status(request.user)
        return Response({"present": st.present, "last4": st.last4})

    @extend_schema(request=s.WandbKeyInSerializer, responses={200: s.WandbKeyStatusSerializer, 400: _detail})
    def post(self, request: Request) -> Response:
        data = s.WandbKeyInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        st = services.save_wandb_key(request.user, key=data.validated_data["key"])
        return Response({"present": st.present, "last4": st.last4})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        services.delete_wandb_key(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenListView(generics.ListCreateAPIView):
    """List the user's API tokens; POST creates one and shows its key once."""

    serializer_class = s.ApiTokenSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(request=s.ApiTokenSerializer, responses={201: s.ApiTokenCreatedSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.ApiTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.create_api_token(request.user, name=data.validated_data["name"])
        body = s.ApiTokenSerializer(created.token).data | {"key": created.key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenDetailView(APIView):
    """Revoke one API token."""

    @extend_schema(responses={204: None, 404: _detail})
    def delete(self, request: Request, pk: int) -> Response:
        services.revoke_api_token(request.user, pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
