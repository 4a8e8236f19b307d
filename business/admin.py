from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from business.models import ApiKey, Brand, Company, LoginFailure, Membership, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["brand"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "company", "is_company_admin", "is_staff", "is_active"]
    list_filter = ["company", "is_company_admin", "is_staff", "is_active"]
    fieldsets = DjangoUserAdmin.fieldsets + (("AI Core", {"fields": ("company", "is_company_admin")}),)
    inlines = [MembershipInline]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name"]


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "company", "capacity_weight", "max_running_jobs", "created_at"]
    list_filter = ["company"]
    search_fields = ["name", "company__name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "brand", "role", "created_at"]
    list_filter = ["role", "brand__company", "brand"]
    search_fields = ["user__username", "brand__name"]


@admin.register(LoginFailure)
class LoginFailureAdmin(admin.ModelAdmin):
    list_display = ["username", "ip", "at"]
    list_filter = ["at"]
    search_fields = ["username", "ip"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made through the API (the key is shown once there); here they can be read and revoked."""

    list_display = ["name", "prefix", "brand", "scopes", "created_by", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["brand", "revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["brand", "prefix", "key_hash", "created_by", "created_at", "last_used_at"]
    fields = [*readonly_fields, "name", "scopes", "expires_at", "revoked_at", "monthly_cost_limit"]

    def has_add_permission(self, request) -> bool:
        return False
