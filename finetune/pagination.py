"""Page-number pagination returning `{count, next, previous, results}`."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """Default page size 25, `?page_size=` up to 200."""

    page_size_query_param = "page_size"
    max_page_size = 200
