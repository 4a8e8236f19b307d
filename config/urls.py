from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from ops import views as ops
from web.api_docs import RedocDocsView, SwaggerDocsView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("auth/", include("business.api.urls")),
    path("ai/providers/", include("ai_usage.api.quota_urls")),  # /ai/providers/quotas/: ai_usage's own route
    path("ai/providers/", include("ai_providers.api.urls")),
    path("ai/usage/", include("ai_usage.api.urls")),
    path("ai/openai/", include("ai_openai.api.urls")),
    path("ai/", include("ai_core.api.urls")),
    path("ai/", include("webhooks.api.urls")),
    path("ai/", include("business.api.api_keys")),
    path("ai/", include("business.api.brands")),
    path("v1/", include("gateway.urls")),
    path("ai/", include("batches.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerDocsView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocDocsView.as_view(url_name="schema"), name="redoc"),
    path("metrics", ops.metrics, name="metrics"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("", include("web.urls")),
]

if settings.AICORE_BENCH_BASELINE:
    urlpatterns.append(path("bench/", include("bench.baseline.urls")))

# Errors outside DRF views (an unknown URL, a crash) answer JSON in the API's error shape, not HTML.
handler400 = "business.api.errors.bad_request"
handler403 = "business.api.errors.permission_denied"
handler404 = "business.api.errors.not_found"
handler500 = "business.api.errors.server_error"
