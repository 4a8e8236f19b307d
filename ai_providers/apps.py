from django.apps import AppConfig


class AIProvidersConfig(AppConfig):
    name = "ai_providers"
    verbose_name = "AI providers"

    def ready(self):
        from ai_providers import capacity
        from ai_providers.models import CapacityLimit, ModelPrice, Provider, ProviderCredential, ProviderModel
        from ai_providers.selectors import catalogue_memo

        # A catalogue or credential edit applies to the next job at once in this process (others: within the TTL).
        catalogue_memo.clear_on_change(Provider, ProviderModel, ModelPrice, ProviderCredential)
        capacity.memo.clear_on_change(CapacityLimit)
