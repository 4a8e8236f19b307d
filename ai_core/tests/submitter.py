"""A separate API-like process that submits jobs (the broker-outage test runs it against a private Redis).

python -m ai_core.tests.submitter BRAND_ID, then one line per batch on stdin: `COUNT [ECHO_DELAY_MS]`;
each batch answers one line on stdout: {"pks": [...]}. One process for the whole test: Django starts once.
"""

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(brand_id: int) -> None:
    import django

    django.setup()
    from ai_core.services import job_create
    from business.models import Brand

    brand = Brand.objects.get(pk=brand_id)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        count, delay_ms = (list(map(int, line.split())) + [0])[:2]
        pks = []
        for _ in range(count):
            job, _ = job_create(
                brand=brand,
                user=None,
                job_type="chat_completion",
                input_data={
                    "model": "echo-1",
                    "messages": [{"role": "user", "content": "hi"}],
                    "echo": {"delay_ms": delay_ms},
                },
            )
            pks.append(job.pk)
        print(json.dumps({"pks": pks}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
