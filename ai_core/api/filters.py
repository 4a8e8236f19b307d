import django_filters
from django.db.models import BigIntegerField, Q, Value
from django.db.models.functions import Cast
from django_filters.rest_framework import DjangoFilterBackend

from ai_core import selectors
from ai_core.models import AIJob, JobPriority, JobStatus
from business.errors import ApplicationError


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
        # Matching type names are resolved first (a handful of rows) so the job query tests its own
        # columns only, each of which has a trigram index on PostgreSQL (migration 0004).
        condition = Q(job_id__icontains=value) | Q(description__icontains=value)
        type_ids = selectors.job_type_ids_matching(value)
        if type_ids:
            condition |= Q(job_type_id__in=type_ids)
        # The brand again, typed bigint like the column: those indexes lead with brand_id (btree_gin), whose
        # operator class only matches bigint = bigint, so the scan reads this brand's matches, not everyone's.
        same_brand = Q(brand_id=Cast(Value(self.request.brand.id), BigIntegerField()))
        return queryset.filter(condition & same_brand)

    # Filters whose counts the roll-up can answer exactly (everything else counts the rows).
    ROLLUP_COUNTABLE = {"status", "job_type"}


class JobFilterBackend(DjangoFilterBackend):
    """django-filter, with a bad filter value answered as a 400 whose error_code names what was wrong."""

    ERROR_CODES = {
        "status": "INVALID_STATUS",
        "ordering": "INVALID_ORDERING",
        "created_at__gte": "INVALID_DATE",
        "created_at__lte": "INVALID_DATE",
    }

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            errors = {field: [str(message) for message in messages] for field, messages in filterset.errors.items()}
            field = next(iter(errors))
            raise ApplicationError(f"{field}: {errors[field][0]}",
                                   error_code=self.ERROR_CODES.get(field, "INVALID_FILTER"), errors=errors)
        return filterset.qs
