import asyncio
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import MiddlewareNotUsed, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.urls import get_resolver, set_script_prefix
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does before making its handler

from ai_providers.services import import_sdks  # noqa: E402  (after setup: it imports models)
from gateway.views import DISCONNECTED  # noqa: E402

# The gateway calls providers in this process: their SDKs are imported before the first request, not by it.
import_sdks()

# Paths served through the middleware run synchronously, in the request's one thread (the gateway's sync views).
SYNC_CHAIN_PREFIXES = ("/v1/",)


def _path_info(scope) -> str:
    """The request's path_info as Django's ASGIRequest makes it (the path without the script prefix)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path.removeprefix(root) if root and path.startswith(f"{root}/") else path


class GatewayChain(BaseHandler):
    """The gateway's views (gateway.urls, under /v1/) behind AICORE_GATEWAY_MIDDLEWARE, loaded synchronously.

    A bearer-key JSON API needs none of a browser session's middleware (settings.AICORE_GATEWAY_SKIPPED_MIDDLEWARE:
    sessions, CSRF, the session user, messages); the rest of MIDDLEWARE (the database and size guards, the
    security headers, Content-Length, and any middleware added later) runs as Django runs it: this is Django's
    BaseHandler (its get_response, view and exception middleware, error responses), with two differences, the
    middleware list and the URL resolution: each gateway path's ResolverMatch is resolved once, here, by the
    project's own resolver, and reused (no regex walk of the URLconf per call). Paths it does not know (a 404,
    a trailing slash) go through the whole chain, so they answer as everywhere else.
    """

    def __init__(self, prefix: str, middleware: list[str]):
        super().__init__()
        from gateway.urls import urlpatterns

        resolver = get_resolver()
        self.matches = {path: resolver.resolve(path) for path in (prefix + str(p.pattern) for p in urlpatterns)}
        self.middleware = list(middleware)
        self.load_middleware()

    def load_middleware(self, is_async=False):
        """BaseHandler.load_middleware for sync middleware of `self.middleware` (each gets the next's handler)."""
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(self.middleware):
            try:
                instance = import_string(path)(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    def resolve_request(self, request):
        match = self.matches[request.path_info]
        request.resolver_match = match
        return match


def _heard(hung_up: threading.Event, listener: asyncio.Task) -> None:
    """The disconnect listener ended: the client hung up (RequestAborted, retrieved here), unless we cancelled it."""
    if not listener.cancelled():
        listener.exception()
        hung_up.set()


class ApplicationHandler(ASGIHandler):
    """Django's ASGI handler, except that the gateway's requests (/v1/) are served in one hop to a kept thread.

    Under ASGI, Django runs its middleware in async mode, and each of the stock middlewares (MiddlewareMixin)
    hops to a thread and back for every process_request and process_response; with one sync-only middleware in
    the chain it also hops back to the event loop for the rest of it. For a sync view that is a dozen hops per
    request. Django's handler also starts (and joins) a new thread for every request (asgiref's
    ThreadSensitiveContext) and hops to it twice more for the request_started and request_finished signals.
    A /v1/ request instead runs, whole, in one call to a kept thread of `v1_threads` (threads are made as
    concurrent requests need them and reused after): the request_started signal, the gateway's middleware loaded
    as WSGI loads it (GatewayChain: MIDDLEWARE without the browser session's), the view, and (for an answer that
    is not a stream) the response's close, which sends request_finished. The response is then written by
    Django's own send_response, so its bytes are those of the standard path; a stream is iterated on the event
    loop while the client's disconnect is listened for, as Django does, and closed in a kept thread after. Other
    paths keep Django's handler, whose async middleware chain the async SSE views (ai_core.api.events) are
    written for.

    Relies on ASGIHandler's undocumented read_body, create_request, send_response and listen_for_disconnect
    (docs/PERFORMANCE.md, private framework APIs; pinned by config/tests/test_asgi_v1.py).
    """

    def __init__(self):
        super().__init__()
        self.sync_chain = BaseHandler()
        self.sync_chain.load_middleware(is_async=False)
        self.gateway_chain = GatewayChain(SYNC_CHAIN_PREFIXES[0], settings.AICORE_GATEWAY_MIDDLEWARE)
        self.v1_threads = ThreadPoolExecutor(max_workers=settings.AICORE_GATEWAY_MAX_THREADS, thread_name_prefix="v1")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _path_info(scope).startswith(SYNC_CHAIN_PREFIXES):
            return await self._v1(scope, receive, send)
        return await super().__call__(scope, receive, send)

    async def get_response_async(self, request):
        if request.path_info.startswith(SYNC_CHAIN_PREFIXES):  # not reached through __call__; kept for callers
            return await sync_to_async(self.sync_chain.get_response, thread_sensitive=True)(request)
        return await super().get_response_async(request)

    def _v1_respond(self, scope, body_file):
        """In a kept thread: what Django's handle() does around the sync middleware chain, in one go."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            chain = self.gateway_chain if request.path_info in self.gateway_chain.matches else self.sync_chain
            response = chain.get_response(request)
            response._handler_class = self.__class__
        if not response.streaming:
            response.close()  # request_finished: the request's connections handed back, here in its thread
        return response

    async def _v1(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # as sync_to_async: the thread sees the request's context
        # The client's hang-up is listened for from the start, and told to the view (it may hold its answer for
        # a while: a stream waits for its first token) through the request's scope.
        hung_up = threading.Event()
        scope = {**scope, DISCONNECTED: hung_up}
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        listener.add_done_callback(partial(_heard, hung_up))
        try:
            response = await loop.run_in_executor(self.v1_threads, context.run, self._v1_respond, scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)
                return
            sending = asyncio.create_task(self.send_response(response, send))
            await asyncio.wait([listener, sending], return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, sending):  # as Django's handle(): the one still running is cancelled
                if not task.done():
                    task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, RequestAborted, OSError):
                    pass
            await loop.run_in_executor(self.v1_threads, context.run, response.close)
        finally:
            if not listener.done():
                listener.cancel()
            body_file.close()


application = ApplicationHandler()

if settings.AICORE_SERVE_STATIC:
    # uvicorn serves no files: without this the admin would come unstyled under `make run`.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
