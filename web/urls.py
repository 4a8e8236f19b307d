from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from web import views
from web.forms import ThrottledLoginForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="web-dashboard"), name="web-home"),
    # Where browsers look for an icon when a page (JSON, /metrics) names none.
    path("favicon.ico", RedirectView.as_view(url=static("web/favicon.svg")), name="favicon"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="web/login.html",
            redirect_authenticated_user=True,
            authentication_form=ThrottledLoginForm,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="web-dashboard"),
    path("dashboard/brand/", views.switch_brand, name="web-switch-brand"),
    path("dashboard/submit/", views.submit, name="web-submit"),
    path("dashboard/batches/", views.batches, name="web-batches"),
    path("dashboard/batches/<str:batch_id>/results/", views.batch_results, name="web-batch-results"),
    path("dashboard/jobs/<str:job_id>/", views.job_detail, name="web-job"),
    path("dashboard/jobs/<str:job_id>/cancel/", views.cancel, name="web-cancel"),
    path("dashboard/jobs/", views.jobs, name="web-jobs"),
    path("dashboard/usage/", views.usage, name="web-usage"),
    path("dashboard/quotas/", views.quotas, name="web-quotas"),
    path("dashboard/providers/", views.providers, name="web-providers"),
    path("dashboard/providers/<slug:provider_name>/credential/", views.credential_save, name="web-credential-save"),
    path("dashboard/credentials/<str:credential_id>/test/", views.credential_test, name="web-credential-test"),
    path("dashboard/api-keys/", views.api_keys, name="web-api-keys"),
    path("dashboard/api-keys/<str:key_id>/revoke/", views.api_key_revoke, name="web-api-key-revoke"),
    path("dashboard/webhooks/", views.webhooks, name="web-webhooks"),
    path("dashboard/webhooks/<str:endpoint_id>/", views.webhook_detail, name="web-webhook"),
    path(
        "dashboard/webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/",
        views.redeliver,
        name="web-redeliver",
    ),
]
