from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenRefreshView

from business.api.authentication import token_revoked
from business.models import User
from business.proxies import client_ip
from business.selectors import user_profile
from business.services import login_check


class BrandRoleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=["member", "admin"])


class CompanyRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UserProfileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    company = CompanyRefSerializer(allow_null=True)
    is_company_admin = serializers.BooleanField()
    brands = BrandRoleSerializer(many=True)


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


class LoginApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    error_codes = {"post": ["401", "429"]}  # bad credentials; too many failures

    @extend_schema(
        summary="Log in",
        description=(
            "Exchanges a username and password for a JWT pair (`access` for `Authorization: Bearer`, `refresh` "
            "for /auth/refresh/) and the user's profile: company, brands and roles. Bad credentials are 401; "
            "repeated failures per username or IP are throttled (429)."
        ),
        request=LoginInputSerializer,
        responses=inline_serializer(
            "LoginOutput",
            {"access": serializers.CharField(), "refresh": serializers.CharField(), "user": UserProfileSerializer()},
        ),
    )
    def post(self, request):
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = login_check(**data.validated_data, ip=client_ip(request.META))
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh), "user": user_profile(user)})


class RevocableRefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, refusing a refresh token issued before a password change or for a deleted user.

    simplejwt 5.5 checks CHECK_REVOKE_TOKEN on access tokens only (its later releases check refresh too), so
    a stolen refresh token would otherwise keep minting access tokens after the password was changed.
    """

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        user = User.objects.filter(**{api_settings.USER_ID_FIELD: refresh.get(api_settings.USER_ID_CLAIM)}).first()
        if user is None:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        if token_revoked(refresh, user):
            raise AuthenticationFailed("The user's password has been changed.", "password_changed")
        return super().validate(attrs)


@extend_schema_view(
    post=extend_schema(
        summary="Refresh the tokens",
        description=(
            "Exchanges a refresh token for a new `access` and a new `refresh`; the old refresh token is "
            "blacklisted (rotation). An invalid, expired or already used token is 401."
        ),
    )
)
class RefreshApi(TokenRefreshView):
    """POST {refresh} -> {access, refresh}; the old refresh token is blacklisted (rotation)."""

    serializer_class = RevocableRefreshSerializer
    error_codes = {"post": ["401"]}  # invalid, expired, already rotated or revoked token
