import functools

from rest_framework.authentication import BaseAuthentication
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow, get_md5_hash_password

from business.access import BRAND_HEADER, parse_brand_header, user_with_brand
from business.models import ApiKey
from business.services import API_KEY_PREFIX, api_key_use


def bearer_api_key(request) -> str | None:
    """The `aic_…` key of an `Authorization: Bearer aic_…` header, else None (a JWT, or nothing)."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token.startswith(API_KEY_PREFIX) else None


def api_key_brand(key: ApiKey, header_value: str | None) -> tuple[int | None, object]:
    """What BrandScopedMixin reads for a key: its own brand, or None (403) when X-Brand-ID names another."""
    if header_value is None or header_value.strip() == "":
        return None, key.brand
    brand_id = parse_brand_header(header_value)
    return brand_id, (key.brand if brand_id == key.brand_id else None)


def request_api_key(request) -> ApiKey | None:
    """The key a DRF request authenticated with, if it did with one."""
    return request.auth if isinstance(request.auth, ApiKey) else None


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer aic_…`: the request acts as the key's brand (on behalf of the key's creator) with
    the key's scopes (ApiKeyScopes). Listed before the JWT class, which never sees an `aic_` token.

    A refused key raises ApiKeyRefused (401 with API_KEY_INVALID / _REVOKED / _EXPIRED / _OWNER_GONE).
    """

    def authenticate(self, request):
        raw = bearer_api_key(request)
        if raw is None:
            return None
        key = api_key_use(raw)
        request._request.aicore_brand = api_key_brand(key, request.META.get(BRAND_HEADER))
        return key.created_by, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class JWTBrandAuthentication(JWTAuthentication):
    """JWT authentication that reads the user and the X-Brand-ID brand in one query.

    Every /ai/ request needs both; BrandScopedMixin uses the brand found here (or refuses it) and resolves
    the brand itself when the header is absent or unusable. The user checks are simplejwt's own.
    """

    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's validation, with the signature of a token string checked once per process.

        Decoding and verifying a JWT (base64, JSON, HMAC) is most of the authentication's CPU, and a client
        sends the same token for up to its lifetime. What can turn a verified token invalid later is time,
        so its claims are kept (_signed_claims) and every request still runs the token class's verify():
        expiry, token type, jti (and the blacklist, for classes that have one); get_user() checks the user.
        A failing token goes through simplejwt's full path again, so its error is simplejwt's own.
        """
        token_class, claims = _signed_claims(raw_token)
        token = token_class.__new__(token_class)  # Token.__init__ would decode it again
        token.token, token.current_time, token.payload = raw_token, aware_utcnow(), dict(claims)
        try:
            token.verify()
        except TokenError:
            return super().get_validated_token(raw_token)  # raises InvalidToken, as for a token never seen
        return token

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
        if token_revoked(validated_token, user):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        self.request._request.aicore_brand = (brand_id, brand)
        return user


def token_revoked(token: Token, user) -> bool:
    """Whether the user's password changed since `token` (access or refresh) was issued.

    simplejwt's rule (CHECK_REVOKE_TOKEN): the token carries a fingerprint of the password hash at issue time.
    It is compared with the user read on this request, never with anything remembered, so the per-process
    signature memo below cannot let a revoked token through.
    """
    return api_settings.CHECK_REVOKE_TOKEN and token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
        user.password
    )


@functools.lru_cache(maxsize=4096)
def _signed_claims(raw_token: bytes) -> tuple[type[Token], dict]:
    """The token class and claims of a token whose signature and claims simplejwt accepted (an invalid token
    raises and is not remembered). Bounded: the least recently used tokens are verified again."""
    token = JWTAuthentication().get_validated_token(raw_token)
    return type(token), token.payload
