from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenRefreshView

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
        user = login_check(**data.validated_data, ip=request.META.get("REMOTE_ADDR"))
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh), "user": user_profile(user)})


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

    error_codes = {"post": ["401"]}  # invalid, expired or already rotated token
