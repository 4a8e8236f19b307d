import django_filters
from django.db.models import Q

from ai_core.models import AIJob, JobPriority, JobStatus


class JobFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)
    priority = django_filters.ChoiceFilter(choices=JobPriority.choices)
    job_type = django_filters.CharFilter(field_name="job_type__name", max_length=100)
    created_by = django_filters.NumberFilter(field_name="created_by_id")
    is_async = django_filters.BooleanFilter()
    progress_percentage__gte = django_filters.NumberFilter(field_name="progress_percentage", lookup_expr="gte")
    created_at__gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    search = django_filters.CharFilter(method="filter_search", max_length=200)
    ordering = django_filters.OrderingFilter(
        fields=["created_at", "updated_at", "started_at", "completed_at", "progress_percentage", "status",
                "priority", "id"]
    )

    class Meta:
        model = AIJob
        fields = []

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(job_id__icontains=value) | Q(description__icontains=value) | Q(job_type__name__icontains=value)
        )

    # Filters whose counts the roll-up can answer exactly (everything else counts the rows).
    ROLLUP_COUNTABLE = {"status", "job_type"}
