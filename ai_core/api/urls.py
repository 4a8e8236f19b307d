from rest_framework.routers import SimpleRouter

from ai_core.api.views import JobTypeViewSet, JobViewSet

router = SimpleRouter()
router.register("job-types", JobTypeViewSet, basename="job-type")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = router.urls
