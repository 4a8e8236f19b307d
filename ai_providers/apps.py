from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AIProvidersConfig(AppConfig):
    name = "ai_providers"
    verbose_name = "AI providers"

    def ready(self):
        from ai_providers.models import ModelPrice, Provider, ProviderModel
        from ai_providers.selectors import catalogue_memo

        # A catalogue edit applies to the next job at once in this process (others: within the TTL).
        for model in (Provider, ProviderModel, ModelPrice):
            uid = f"catalogue_memo_{model.__name__}"
            post_save.connect(catalogue_memo.clear, sender=model, dispatch_uid=f"{uid}_save")
            post_delete.connect(catalogue_memo.clear, sender=model, dispatch_uid=f"{uid}_delete")
