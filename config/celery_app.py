"""The one Celery app of AI Core. Tasks take ids; the database row is the truth, the broker only wakes workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("aicore")
# The current app in every thread, not only the importing one: apps reach it as `celery.current_app` (no app
# imports config), and a thread of their own (bulk wake-ups) must not get a default app of its own.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
