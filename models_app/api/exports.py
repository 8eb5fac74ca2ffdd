"""Models API: exports routes (see shared/API.md, Models). Filled in by the Models issue."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
