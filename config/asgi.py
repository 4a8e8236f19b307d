import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does before making its handler

# Paths served through the middleware run synchronously, in the request's one thread (the gateway's sync views).
SYNC_CHAIN_PREFIXES = ("/v1/",)


class ApplicationHandler(ASGIHandler):
    """Django's ASGI handler, except that the gateway's requests go through the middleware run synchronously.

    Under ASGI, Django runs its middleware in async mode, and each of the stock middlewares (MiddlewareMixin)
    hops to a thread and back for every process_request and process_response; with one sync-only middleware in
    the chain it also hops back to the event loop for the rest of it. For a sync view that is a dozen hops per
    request, a third of the API's CPU on a gateway call. The sync chain (the same MIDDLEWARE, loaded as WSGI
    loads it) costs one hop: the request's whole handling runs in the request's thread. Other paths keep the
    async chain, which the async SSE views (ai_core.api.events) are written for.
    """

    def __init__(self):
        super().__init__()
        self.sync_chain = BaseHandler()
        self.sync_chain.load_middleware(is_async=False)

    async def get_response_async(self, request):
        if request.path_info.startswith(SYNC_CHAIN_PREFIXES):
            return await sync_to_async(self.sync_chain.get_response, thread_sensitive=True)(request)
        return await super().get_response_async(request)


application = ApplicationHandler()

from django.conf import settings  # noqa: E402  (after the app: settings are configured by then)

if settings.AICORE_SERVE_STATIC:
    # uvicorn serves no files: without this the admin would come unstyled under `make run`.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
