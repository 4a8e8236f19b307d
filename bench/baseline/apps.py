from django.apps import AppConfig


class BaselineConfig(AppConfig):
    """The benchmark's reference: a bare DRF ModelViewSet, installed only when AICORE_BENCH_BASELINE=1."""

    name = "bench.baseline"
    label = "bench_baseline"
    default_auto_field = "django.db.models.BigAutoField"
