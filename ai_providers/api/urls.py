from django.urls import path
from rest_framework.routers import SimpleRouter

from ai_providers.api.views import CredentialViewSet, EnvironmentCapacityView, ProviderListView

router = SimpleRouter()
router.register("credentials", CredentialViewSet, basename="provider-credential")

urlpatterns = [
    path("", ProviderListView.as_view(), name="provider-list"),
    *router.urls,
    path("<str:name>/capacity/", EnvironmentCapacityView.as_view(), name="provider-environment-capacity"),
]
