"""Pagination shared by every app's API."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response


class ProductCursorPagination(CursorPagination):
    """Cursor pages: stable under inserts and no COUNT(*) over millions of rows."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class LargePagePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 2000


def paginated_response(*, queryset, serializer_class, request, view, paginator=None) -> Response:
    """Return one page of `queryset`, serialised, with DRF's page links."""
    paginator = paginator or PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)
