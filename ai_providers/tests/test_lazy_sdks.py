"""The provider SDKs load on the first call that needs one, not when a process starts: importing openai and
anthropic cost every `manage.py` and worker process about two seconds of start-up. The API process (config.asgi)
is the exception, on purpose: the gateway calls providers there from its first request on (ai_providers.services.
import_sdks, tested in gateway/tests/test_asgi_v1.py)."""

import json
import os
import subprocess
import sys

from django.conf import settings

PROBE = """
import json, sys
import django
django.setup()
import config.urls, ai_core.tasks, ai_core.engine.handlers, ai_providers.selectors  # what serves (no ASGI app)
from django.urls import get_resolver
get_resolver().url_patterns  # every view module
loaded_at_start = sorted(m for m in ("openai", "anthropic") if m in sys.modules)

from ai_providers.models import Provider, ProviderKind
from ai_providers.services import Endpoint, client_for
endpoint = Endpoint(api_key="k", base_url="http://127.0.0.1:9/v1", organization="", source="environment")
client_for(Provider(name="anthropic", kind=ProviderKind.ANTHROPIC), endpoint)
print(json.dumps({"at_start": loaded_at_start, "after_a_call": "anthropic" in sys.modules}))
"""


def test_no_provider_sdk_is_imported_until_a_client_is_built():
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONWARNINGS": "ignore"}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    outcome = json.loads(probe.stdout.strip().splitlines()[-1])
    assert outcome == {"at_start": [], "after_a_call": True}
