import django_filters

from ai_usage.models import AIJobUsage


class UsageFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter(field_name="provider_name")
    model = django_filters.CharFilter(field_name="model_name")
    job_type = django_filters.CharFilter(field_name="job_type__name")
    user = django_filters.NumberFilter(field_name="user_id")
    final_status = django_filters.CharFilter(field_name="final_status")
    success = django_filters.BooleanFilter(method="filter_success")
    job_id = django_filters.CharFilter(field_name="job__job_id")
    created_at__gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = AIJobUsage
        fields = []

    def filter_success(self, queryset, name, value):
        return queryset.filter(success_rate__gte=1) if value else queryset.filter(success_rate__lt=1)
