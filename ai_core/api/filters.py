from datetime import UTC

import django_filters
from django import forms
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from ai_core import selectors
from ai_core.models import PRIORITY_RANK, AIJob, JobPriority, JobStatus
from business.errors import ApplicationError


class IntegerFilter(django_filters.NumberFilter):
    """Whole numbers in the database's range: "1.5" or "9" * 30 are a 400, not a rounded id or an overflow."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", -(2**63))
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class UTCRepresentableDateTimeField(IsoDateTimeField):
    """An instant in UTC, or a 400: year 1 at +14:00 overflows, and PostgreSQL refuses offsets past ±16 h
    that Python accepts (+21:57 was a 500)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and timezone.is_aware(value):
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise forms.ValidationError("Date out of range.", code="invalid") from None
        return value


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCRepresentableDateTimeField


class JobOrderingFilter(django_filters.OrderingFilter):
    """`priority` orders by rank, not alphabetically: `-priority` is urgent > high > normal > low, `priority` the
    reverse; jobs of one rank come newest first, as in the default order, so pages are stable."""

    def filter(self, qs, value):
        if not value or not any(param.lstrip("-") == "priority" for param in value):
            return super().filter(qs, value)
        ordering = []
        for param in value:
            field = self.get_ordering_value(param)
            if field.lstrip("-") == "priority":
                # An expression, not a column: only a list ordered by priority pays for it.
                rank = Case(
                    *(When(priority=name, then=Value(rank)) for name, rank in PRIORITY_RANK.items()),
                    output_field=IntegerField(),
                )
                field = rank.desc() if field.startswith("-") else rank.asc()
            ordering.append(field)
        return qs.order_by(*ordering, "-created_at", "-id")


class JobFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)
    priority = django_filters.ChoiceFilter(choices=JobPriority.choices)
    job_type = django_filters.CharFilter(field_name="job_type__name", max_length=100)
    created_by = IntegerFilter(field_name="created_by_id", min_value=1)
    is_async = django_filters.BooleanFilter()
    progress_percentage__gte = IntegerFilter(
        field_name="progress_percentage", lookup_expr="gte", min_value=0, max_value=100
    )
    created_at__gte = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = DateTimeFilter(field_name="created_at", lookup_expr="lte")
    search = django_filters.CharFilter(method="filter_search", max_length=200)
    ordering = JobOrderingFilter(
        fields=[
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
            "progress_percentage",
            "status",
            "priority",
            "id",
        ],
        help_text=(
            "Comma-separated fields, `-` for descending. `priority` sorts by rank: `-priority` puts urgent first "
            "(urgent > high > normal > low), `priority` low first; within a rank, newest first. "
            "Default: `-created_at`."
        ),
    )

    class Meta:
        model = AIJob
        fields = []

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        # Matching type names are resolved first (a handful of rows) so the job query tests its own
        # columns only, each of which has a trigram index on PostgreSQL (migration 0005).
        condition = Q(job_id__icontains=value) | Q(description__icontains=value)
        type_ids = selectors.job_type_ids_matching(value)
        if type_ids:
            condition |= Q(job_type_id__in=type_ids)
        # Those indexes lead with brand_id (btree_gin), so the scan reads this brand's matches only: jobs_of()
        # types the brand condition bigint, the one form their operator class accepts.
        return queryset.filter(condition)

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
            errors = {field: [str(m) for m in messages] for field, messages in filterset.errors.items()}
            field = next(iter(errors))
            raise ApplicationError(
                f"{field}: {errors[field][0]}", error_code=self.ERROR_CODES.get(field, "INVALID_FILTER"), errors=errors
            )
        return filterset.qs
