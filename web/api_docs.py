"""The API documentation pages (Swagger UI and Redoc), served with their assets from this server.

drf-spectacular-sidecar ships both as static files. A Content-Security-Policy keeps the pages to this
origin: Redoc's bundle still links its footer logo from a CDN, which the browser then refuses without
sending a request, so the docs work offline and tell no third party who reads them.
"""

from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

# Inline styles: both UIs set style attributes; Redoc's page starts it with an inline script, and its search
# runs in a worker made from a blob.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'self'"
)


class _SameOriginOnly:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response


class SwaggerDocsView(_SameOriginOnly, SpectacularSwaggerSplitView):
    """Swagger UI; its initialiser is a script of its own (`?script=`), so the page has no inline script."""


class RedocDocsView(_SameOriginOnly, SpectacularRedocView):
    template_name = "api_docs/redoc.html"  # drf-spectacular's, without its Google web fonts
