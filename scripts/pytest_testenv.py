"""Test environment, loaded with `-p` so it runs before pytest-django imports the settings.

(Setting these in conftest.py is too late: settings are already evaluated when conftest is imported.)
"""

import os
import secrets

os.environ.setdefault("AICORE_ENV", "test")
os.environ.setdefault("AICORE_FAST_PASSWORD_HASHER", "1")
# A random signing key per test run, inherited by the worker processes tests start (they decrypt credentials
# the test process encrypted with a key derived from it): never a constant a forged token could use.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# /metrics answers only with its token outside development; tests scrape with this one.
os.environ.setdefault("AICORE_METRICS_TOKEN", secrets.token_urlsafe(24))
