"""The signing key: random per installation in development, random per run in tests, required in production."""

import os
import stat
import subprocess
import sys

import jwt
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

# What config/settings.py used outside production before it made a key per installation: anyone who read the
# repository could sign tokens with it.
FORMER_REPOSITORY_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"
PRINT_KEY = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"


def _boot(tmp_path, **env):
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "AICORE_VAR_DIR": str(tmp_path), **env}
    environ.pop("SECRET_KEY", None)
    return subprocess.run([sys.executable, "-c", PRINT_KEY], env=environ, capture_output=True, text=True)


def test_development_makes_one_random_key_per_installation_kept_under_var(tmp_path):
    first = _boot(tmp_path, AICORE_ENV="development")
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    kept = tmp_path / "secret_key"
    assert kept.read_text() == key and len(key) >= 50 and key != FORMER_REPOSITORY_KEY
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert _boot(tmp_path, AICORE_ENV="development").stdout.strip() == key  # the next start signs alike
    other = tmp_path / "other"
    other.mkdir()
    assert _boot(other, AICORE_ENV="development").stdout.strip() != key  # another installation, another key


def test_production_still_requires_a_secret_key(tmp_path):
    refused = _boot(tmp_path, AICORE_ENV="production")
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr
    assert not (tmp_path / "secret_key").exists()


def test_tests_sign_with_a_random_key_of_their_own(settings):
    assert settings.SECRET_KEY != FORMER_REPOSITORY_KEY and len(settings.SECRET_KEY) >= 50


def test_a_token_forged_with_the_former_repository_key_is_refused(personas, settings):
    claims = RefreshToken.for_user(personas.alice).access_token.payload  # what a real token of alice holds

    def jobs_with(key):
        client = APIClient()
        token = jwt.encode(claims, key, algorithm="HS256")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_BRAND_ID=str(personas.brand_a.id))
        return client.get("/ai/jobs/").status_code

    assert jobs_with(settings.SECRET_KEY) == 200  # the same claims, signed with this installation's key
    assert jobs_with(FORMER_REPOSITORY_KEY) == 401
