from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination

from business.errors import ApplicationError
from business.numbers import parse_natural


class StandardPagination(PageNumberPagination):
    """`?page=` / `?page_size=` (default 20, max 100; larger is a 400, not silently capped).

    A view may set `known_count` before paginating when it can count without scanning rows (roll-ups).
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    known_count: int | None = None

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = parse_natural(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            raise ApplicationError(
                f"page_size must be an integer from 1 to {self.max_page_size}", error_code="INVALID_PAGE_SIZE"
            )
        return size

    def django_paginator_class(self, object_list, per_page):
        paginator = Paginator(object_list, per_page)
        if self.known_count is not None:
            paginator.count = self.known_count  # overrides the cached_property: no COUNT(*) over the rows
        return paginator
