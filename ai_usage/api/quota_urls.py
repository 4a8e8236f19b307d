"""The quotas API at its documented path, /ai/providers/quotas/ (/ai/usage/quotas/ is its alias, ai_usage/api/urls.py).

Declared by ai_usage, which owns quotas, and included from config/urls.py under the providers' prefix ahead of
the providers' own routes (as it was routed before them), so the providers' app imports nothing of accounting.
"""

from rest_framework.routers import SimpleRouter

from ai_usage.api.views import QuotaViewSet

router = SimpleRouter()
router.register("quotas", QuotaViewSet, basename="provider-quota")

urlpatterns = router.urls
