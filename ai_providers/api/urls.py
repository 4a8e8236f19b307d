from django.urls import path
from rest_framework.routers import SimpleRouter

from ai_providers.api.views import CredentialViewSet, EnvironmentCapacityView, ProviderListView
from ai_usage.api.views import QuotaViewSet

router = SimpleRouter()
router.register("credentials", CredentialViewSet, basename="provider-credential")
router.register("quotas", QuotaViewSet, basename="provider-quota")

urlpatterns = [
    path("", ProviderListView.as_view(), name="provider-list"),
    *router.urls,
    path("<str:name>/capacity/", EnvironmentCapacityView.as_view(), name="provider-environment-capacity"),
]
