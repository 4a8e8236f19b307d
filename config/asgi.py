import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from django.conf import settings  # noqa: E402  (after the app: settings are configured by then)

if settings.AICORE_SERVE_STATIC:
    # uvicorn serves no files: without this the admin would come unstyled under `make run`.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
