from rest_framework.routers import SimpleRouter

from ai_usage.api.views import QuotaViewSet, UsageViewSet

router = SimpleRouter()
router.register("quotas", QuotaViewSet, basename="usage-quota")
router.register("", UsageViewSet, basename="usage")

urlpatterns = router.urls
