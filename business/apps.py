from django.apps import AppConfig


class BusinessConfig(AppConfig):
    name = "business"
    verbose_name = "Companies, brands and users"

    def ready(self):
        from business.models import ApiKey, Membership, User
        from business.services import api_keys_memo

        # What decides whether a key may be used, edited in this process: the next request sees it.
        api_keys_memo.clear_on_change(ApiKey, User, Membership)
