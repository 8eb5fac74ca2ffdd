from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import views

app_name = "models"

router = SimpleRouter()
router.register("base", views.BaseModelViewSet, basename="base-model")
router.register("", views.FineTunedModelViewSet, basename="model")
urlpatterns = router.urls
