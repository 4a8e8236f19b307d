from django.contrib import admin

from web.models import ConsolePreference


@admin.register(ConsolePreference)
class ConsolePreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "last_brand", "updated_at"]
    list_filter = ["last_brand"]
    search_fields = ["user__username"]
    list_select_related = ["user", "last_brand"]
    raw_id_fields = ["user"]
