from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import exports, hub, playground, views

app_name = "models"

router = SimpleRouter()
router.register("base", views.BaseModelViewSet, basename="base-model")
router.register("", views.FineTunedModelViewSet, basename="model")
# Explicit routes first: each feature module owns its own paths (exports, Hub, playground).
urlpatterns = [*exports.urlpatterns, *hub.urlpatterns, *playground.urlpatterns, *router.urls]
