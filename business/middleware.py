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
        # Bulk submission (POST /ai/batches/) carries up to 50 000 jobs: its own, larger limit.
        bulk = request.path == "/ai/batches/" and request.method == "POST"
        limit = settings.AICORE_MAX_BATCH_BODY_BYTES if bulk else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            body = {
                "detail": f"Request body too large (limit {limit} bytes)",
                "error_code": "PAYLOAD_TOO_LARGE",
            }
            return HttpResponse(json.dumps(body), status=413, content_type="application/json")
        return self.get_response(request)
