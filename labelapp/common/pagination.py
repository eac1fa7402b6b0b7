"""Pagination shared by every app's API.

A list endpoint names its paginator in `pagination_class`: `paginated_response` pages with it, and the OpenAPI
schema describes the list as that paginator's envelope (`get_paginated_response_schema`), not a bare array.
"""

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
    """Numbered pages whose size the client may raise (to 2000): short lists read whole."""

    page_size_query_param = "page_size"
    max_page_size = 2000


def paginated_response(*, queryset, serializer_class, request, view) -> Response:
    """Return one page of `queryset`, serialised, in the envelope of the view's `pagination_class`."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)
