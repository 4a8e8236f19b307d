import json

from django.conf import settings
from django.http import HttpResponse


class RequestSizeLimitMiddleware:
    """Refuse an oversized body with 413 before anything reads it (Content-Length is checked up front)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            body = {
                "detail": f"Request body too large (limit {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)",
                "error_code": "PAYLOAD_TOO_LARGE",
            }
            return HttpResponse(json.dumps(body), status=413, content_type="application/json")
        return self.get_response(request)
