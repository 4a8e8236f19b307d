from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from web import views
from web.forms import ThrottledLoginForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="web-dashboard"), name="web-home"),
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
    path("dashboard/jobs/<str:job_id>/", views.job_detail, name="web-job"),
    path("dashboard/jobs/<str:job_id>/cancel/", views.cancel, name="web-cancel"),
]
