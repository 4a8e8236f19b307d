"""The one Celery app of AI Core. Tasks take ids; the database row is the truth, the broker only wakes workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("aicore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
