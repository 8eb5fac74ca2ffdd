from __future__ import annotations

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("csrf/", views.CsrfView.as_view(), name="csrf"),
    path("register/", views.RegisterView.as_view(), name="register"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("me/quotas/", views.MeQuotasView.as_view(), name="me-quotas"),
    path("change-password/", views.ChangePasswordView.as_view(), name="change-password"),
    path("hf-token/", views.HfTokenView.as_view(), name="hf-token"),
    path("wandb-key/", views.WandbKeyView.as_view(), name="wandb-key"),
    path("tokens/", views.ApiTokenListView.as_view(), name="token-list"),
    path("tokens/<int:pk>/", views.ApiTokenDetailView.as_view(), name="token-detail"),
]
