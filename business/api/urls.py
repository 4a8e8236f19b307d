from django.urls import path

from business.api.views import LoginApi, RefreshApi

urlpatterns = [
    path("login/", LoginApi.as_view(), name="auth-login"),
    path("refresh/", RefreshApi.as_view(), name="auth-refresh"),
]
