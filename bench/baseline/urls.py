from rest_framework.routers import SimpleRouter

from bench.baseline.api import BareJobViewSet

router = SimpleRouter()
router.register("bare-jobs", BareJobViewSet, basename="bare-job")
urlpatterns = router.urls
