"""Test environment, loaded with `-p` so it runs before pytest-django imports the settings.

(Setting these in conftest.py is too late: settings are already evaluated when conftest is imported.)
"""

import os

os.environ.setdefault("AICORE_ENV", "test")
os.environ.setdefault("AICORE_FAST_PASSWORD_HASHER", "1")
