from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from business.access import BRAND_HEADER, parse_brand_header, user_with_brand


class JWTBrandAuthentication(JWTAuthentication):
    """JWT authentication that reads the user and the X-Brand-ID brand in one query.

    Every /ai/ request needs both; BrandScopedMixin uses the brand found here (or refuses it) and resolves
    the brand itself when the header is absent or unusable. The user checks are simplejwt's own.
    """

    def authenticate(self, request):
        self.request = request
        return super().authenticate(request)

    def get_user(self, validated_token):
        brand_id = parse_brand_header(self.request.META.get(BRAND_HEADER))
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        if brand_id is None or user_id is None or api_settings.USER_ID_FIELD != "id":
            return super().get_user(validated_token)
        user, brand = user_with_brand(user_id, brand_id)
        if user is None:
            return super().get_user(validated_token)  # raises simplejwt's "User not found"
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        self.request._request.aicore_brand = (brand_id, brand)
        return user
