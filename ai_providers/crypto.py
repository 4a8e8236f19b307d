"""Encryption of provider keys at rest (Fernet; several keys allow rotation: the first encrypts, all decrypt)."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from business.errors import ApplicationError


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Development only (settings refuse production without a key): a stable key derived from SECRET_KEY.
        derived = base64.urlsafe_b64encode(hashlib.sha256(b"aicore-credentials:" + secret_key.encode()).digest())
        keys = (derived.decode(),)
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.AICORE_CREDENTIALS_KEYS), settings.SECRET_KEY)


def encrypt_secret(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        # The key was rotated away or the row was tampered with: the credential is unusable, not a 500.
        raise ApplicationError(
            "A stored provider credential cannot be decrypted; store it again",
            error_code="CREDENTIAL_UNREADABLE",
            status_code=400,
        ) from None
