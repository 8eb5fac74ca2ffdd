from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import DatasetViewSet

app_name = "datasets"

router = SimpleRouter()
router.register("", DatasetViewSet, basename="dataset")
urlpatterns = router.urls
