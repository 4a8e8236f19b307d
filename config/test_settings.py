"""Settings for pytest (pyproject's DJANGO_SETTINGS_MODULE): pytest-django loads settings before any conftest
runs, so the test defaults must be in the environment before config.settings reads it."""

import os

os.environ.setdefault("AICORE_ENV", "test")
os.environ.setdefault("AICORE_FAST_PASSWORD_HASHER", "1")

from config.settings import *  # noqa: E402,F403
