"""A separate API-like process that submits jobs (the broker-outage test runs it against a private Redis).

python -m ai_core.tests.submitter BRAND_ID COUNT EVERY_SECONDS   → prints {"pks": [...], "seconds": [...]}
"""

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(brand_id: int, count: int, every: float) -> None:
    import django

    django.setup()
    from ai_core.services import job_create
    from business.models import Brand

    brand = Brand.objects.get(pk=brand_id)
    pks, seconds = [], []
    for _ in range(count):
        started = time.monotonic()
        job, _ = job_create(
            brand=brand,
            user=None,
            job_type="chat_completion",
            input_data={"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]},
        )
        seconds.append(round(time.monotonic() - started, 3))
        pks.append(job.pk)
        time.sleep(every)
    print(json.dumps({"pks": pks, "seconds": seconds}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
