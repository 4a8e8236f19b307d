from django.urls import path
from rest_framework.routers import SimpleRouter

from ai_core.api.events import brand_events, job_events
from ai_core.api.views import JobTypeViewSet, JobViewSet

router = SimpleRouter()
router.register("job-types", JobTypeViewSet, basename="job-type")
router.register("jobs", JobViewSet, basename="job")

# Before the router: its job detail route would otherwise read "events" as a job id.
urlpatterns = [
    path("jobs/events/", brand_events, name="job-events-brand"),
    path("jobs/<str:pk>/events/", job_events, name="job-events"),
    *router.urls,
]
