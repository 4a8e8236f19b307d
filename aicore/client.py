"""A typed Python client for AI Core's REST API.

    from aicore import AICoreClient
    client = AICoreClient("http://127.0.0.1:8000", username="demo", password="…", brand=1)
    job = client.wait(client.submit("chat_completion", {"messages": [{"role": "user", "content": "Hi"}]}))

Login, token refresh (once, on a 401), the X-Brand-ID header and pagination are handled here; every error
answer becomes an `AICoreError` carrying the API's `error_code`.
"""

from __future__ import annotations

import contextlib
import json as _json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import httpx

from aicore.sse import ServerEvent, parse_sse

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout"})


class AICoreError(Exception):
    """An error answer from AI Core: `status_code`, `error_code` and the whole `body`."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.body = body if isinstance(body, dict) else {"detail": str(body)}
        self.error_code: str = self.body.get("error_code", "HTTP_ERROR")
        self.detail: str = str(self.body.get("detail", body))
        super().__init__(f"{status_code} {self.error_code}: {self.detail}")


class Ref(TypedDict):
    id: int
    name: str


class JobType(TypedDict):
    id: int
    name: str
    description: str
    category: str
    estimated_duration_seconds: int
    requires_async: bool
    default_model: str
    timeout_seconds: int
    max_attempts: int
    input_schema: dict


class Job(TypedDict, total=False):
    id: int
    job_id: str
    job_type: dict
    status: str
    priority: str
    progress_percentage: int
    brand: Ref
    created_by: dict | None
    created_at: str
    updated_at: str
    started_at: str | None
    completed_at: str | None
    cancelled_at: str | None
    description: str
    input_data: dict
    result_data: dict | None
    error_message: str
    error_code: str
    is_async: bool
    attempts: int
    execution_time_seconds: float | None
    # detail only
    task_id: str
    openai_job: dict | None
    usage: dict | None
    events: list[dict]


class Page(TypedDict):
    count: int
    next: str | None
    previous: str | None
    results: list[dict]


class Dashboard(TypedDict):
    stats: dict[str, int]
    recent_jobs: list[Job]
    top_job_types: list[dict]
    daily_activity: list[dict]
    brand_breakdown: list[dict]
    scope: str


def _job_ref(job: Job | str | int) -> str:
    if isinstance(job, dict):
        return str(job["job_id"])
    return str(job)


class AICoreClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        access: str | None = None,
        refresh: str | None = None,
        brand: int | str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.brand = brand
        self.access = access
        self.refresh_token = refresh
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        if access is None and username is not None:
            try:
                self.login(username, password or "")
            except BaseException:
                self._http.close()
                raise

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AICoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- auth -----------------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> dict:
        """POST /auth/login/ → keeps the tokens; returns the user profile (id, company, brands)."""
        body = self._send("POST", "/auth/login/", json={"username": username, "password": password}, auth=False)
        self.access, self.refresh_token = body["access"], body["refresh"]
        if self.brand is None and len(body["user"].get("brands", [])) == 1:
            self.brand = body["user"]["brands"][0]["id"]
        return body["user"]

    def refresh(self) -> None:
        """POST /auth/refresh/ (rotation: both tokens are replaced)."""
        if not self.refresh_token:
            raise AICoreError(401, {"detail": "No refresh token; log in first", "error_code": "NOT_AUTHENTICATED"})
        body = self._send("POST", "/auth/refresh/", json={"refresh": self.refresh_token}, auth=False)
        self.access = body["access"]
        self.refresh_token = body.get("refresh", self.refresh_token)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.access:
            headers["Authorization"] = f"Bearer {self.access}"
        if self.brand is not None:
            headers["X-Brand-ID"] = str(self.brand)
        headers.update(extra or {})
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        content: bytes | None = None,
    ) -> Any:
        request_headers = self._headers(headers) if auth else {"Accept": "application/json"}
        body = {"content": content} if content is not None else {"json": json}
        response = self._http.request(method, path, params=_clean(params), headers=request_headers, **body)
        if response.status_code == 401 and auth and self.refresh_token:
            self.refresh()  # the access token expired: one refresh, one retry
            response = self._http.request(method, path, params=_clean(params), headers=self._headers(headers), **body)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500], "error_code": "HTTP_ERROR"}
            raise AICoreError(response.status_code, body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def request(self, method: str, path: str, *, json: Any = None, **params: Any) -> Any:
        """Any endpoint, with auth, brand and errors handled like the typed methods."""
        return self._send(method, path, json=json, params=params)

    def pages(self, path: str, **params: Any) -> Iterator[dict]:
        """Every item of a paginated list, following `next` links."""
        page = self._send("GET", path, params=params)
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self._send("GET", page["next"])

    # --- jobs -----------------------------------------------------------------------------------------

    def job_types(self) -> list[JobType]:
        return self._send("GET", "/ai/job-types/")

    def submit(
        self,
        job_type: str,
        input_data: dict,
        *,
        priority: str = "normal",
        description: str = "",
        idempotency_key: str | None = None,
        wait_seconds: int | None = None,
    ) -> Job:
        """POST /ai/jobs/ → the pending job (or, with wait_seconds, the job once final or after that long)."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if wait_seconds:
            headers["Prefer"] = f"wait={wait_seconds}"
        return self._send(
            "POST",
            "/ai/jobs/",
            headers=headers,
            json={
                "job_type": job_type,
                "input_data": input_data,
                "priority": priority,
                "description": description,
            },
        )

    def jobs(self, **filters: Any) -> Page:
        """One page of GET /ai/jobs/ (status, priority, job_type, search, ordering, page, page_size…)."""
        return self._send("GET", "/ai/jobs/", params=filters)

    def iter_jobs(self, **filters: Any) -> Iterator[Job]:
        return self.pages("/ai/jobs/", **filters)  # type: ignore[return-value]

    def job(self, job: Job | str | int) -> Job:
        return self._send("GET", f"/ai/jobs/{_job_ref(job)}/")

    def update_job(self, job: Job | str | int, **fields: Any) -> Job:
        return self._send("PATCH", f"/ai/jobs/{_job_ref(job)}/", json=fields)

    def delete_job(self, job: Job | str | int) -> None:
        self._send("DELETE", f"/ai/jobs/{_job_ref(job)}/")

    def cancel(self, job: Job | str | int) -> dict:
        return self._send("POST", f"/ai/jobs/{_job_ref(job)}/cancel/")

    def jobs_by_status(self, status: str, **params: Any) -> dict:
        return self._send("GET", "/ai/jobs/by_status/", params={"status": status, **params})

    def dashboard(self, *, scope: str = "brand") -> Dashboard:
        return self._send("GET", "/ai/jobs/dashboard/", params={"scope": scope})

    # --- live events ----------------------------------------------------------------------------------

    def events(
        self, job: Job | str | int | None = None, *, last_event_id: int | None = None, reconnect: bool = True
    ) -> Iterator[ServerEvent]:
        """Follow GET /ai/jobs/{id}/events/ (or the brand-wide stream when job is None).

        Reconnects with Last-Event-ID when the server closes the stream; a job's stream ends after `end`.
        """
        path = f"/ai/jobs/{_job_ref(job)}/events/" if job is not None else "/ai/jobs/events/"
        while True:
            extra = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                extra["Last-Event-ID"] = str(last_event_id)
            with self._http.stream(
                "GET",
                path,
                headers=self._headers(extra),
                timeout=httpx.Timeout(self._http.timeout.connect, read=None),
            ) as response:
                if response.status_code == 401 and self.refresh_token:
                    self.refresh()
                    continue
                if response.status_code >= 400:
                    response.read()
                    raise AICoreError(response.status_code, response.json())
                for event in parse_sse(response.iter_lines()):
                    if event.id is not None:
                        last_event_id = event.id
                    yield event
                    if event.event == "end":
                        return
            if not reconnect:
                return

    def wait(
        self,
        job: Job | str | int,
        *,
        timeout: float | None = None,
        on_progress: Callable[[int, str], None] | None = None,
    ) -> Job:
        """Block until the job is final (following its event stream); `on_progress(percentage, status)` is
        called on every change. Returns the final job (detail)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with contextlib.closing(self.events(job)) as stream:
            self._follow_until_final(stream, job, deadline, timeout, on_progress)
        return self.job(job)

    @staticmethod
    def _follow_until_final(stream, job, deadline, timeout, on_progress) -> None:
        for event in stream:
            if on_progress is not None and event.event in {"status", "progress"}:
                percent = event.data.get("progress_percentage", 100 if event.data.get("status") == "completed" else 0)
                on_progress(int(percent), event.data["status"])
            if event.event == "end" or event.data.get("status") in FINAL_STATUSES:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {_job_ref(job)} is not final after {timeout} s")

    # --- other /ai/ endpoints -------------------------------------------------------------------------

    # --- batches (bulk submission) ----------------------------------------------------------------------

    def submit_batch(
        self,
        job_type: str,
        jsonl: bytes,
        *,
        completion_window: str = "now",
        priority: str = "normal",
        description: str = "",
        partial: bool = False,
    ) -> dict:
        """POST /ai/batches/ with a JSONL body (one job per line: {input_data, custom_id?, priority?, …})."""
        params = {
            "job_type": job_type,
            "completion_window": completion_window,
            "priority": priority,
            "description": description or None,
            "partial": "true" if partial else None,
        }
        headers = {"Content-Type": "application/x-ndjson"}
        return self._send("POST", "/ai/batches/", params=params, headers=headers, content=jsonl)

    def batch(self, batch_id: str | int) -> dict:
        return self._send("GET", f"/ai/batches/{batch_id}/")

    def batches(self) -> Iterator[dict]:
        return self.pages("/ai/batches/")

    def cancel_batch(self, batch_id: str | int) -> dict:
        return self._send("POST", f"/ai/batches/{batch_id}/cancel/")

    def batch_results(self, batch_id: str | int) -> Iterator[dict]:
        """The batch's results, one dict per job, in submission order (streamed JSONL)."""
        with self._http.stream("GET", f"/ai/batches/{batch_id}/results/", headers=self._headers()) as response:
            if response.status_code >= 400:
                response.read()
                raise AICoreError(response.status_code, response.json())
            for line in response.iter_lines():
                if line.strip():
                    yield _json.loads(line)

    def wait_batch(
        self,
        batch_id: str | int,
        *,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll the batch until none of its jobs is pending or running (or `timeout` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.batch(batch_id)
            if on_progress is not None:
                on_progress(batch)
            if batch["status"] in {"completed", "cancelled"}:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} is still {batch['status']} after {timeout} s")
            time.sleep(poll_seconds)

    def openai_chat(self, **params: Any) -> dict:
        """POST /ai/openai/chat/ (model, messages, temperature / reasoning_effort, max_tokens…)."""
        return self._send("POST", "/ai/openai/chat/", json=params)

    def openai_models(self) -> Any:
        return self._send("GET", "/ai/openai/chat/models/")

    def providers(self) -> Any:
        """GET /ai/providers/: the catalogue with health and whether a key is configured."""
        return self._send("GET", "/ai/providers/")

    def credentials(self) -> list[dict]:
        return self._send("GET", "/ai/providers/credentials/")

    def create_credential(self, **fields: Any) -> dict:
        """provider, api_key (write-only: answers carry has_key), base_url…"""
        return self._send("POST", "/ai/providers/credentials/", json=fields)

    def update_credential(self, credential_id: int, **fields: Any) -> dict:
        return self._send("PATCH", f"/ai/providers/credentials/{credential_id}/", json=fields)

    def delete_credential(self, credential_id: int) -> None:
        self._send("DELETE", f"/ai/providers/credentials/{credential_id}/")

    def test_credential(self, credential_id: int) -> dict:
        return self._send("POST", f"/ai/providers/credentials/{credential_id}/test_connection/")

    def quotas(self) -> list[dict]:
        return self._send("GET", "/ai/providers/quotas/")

    def create_quota(self, **fields: Any) -> dict:
        return self._send("POST", "/ai/providers/quotas/", json=fields)

    def update_quota(self, quota_id: int, **fields: Any) -> dict:
        return self._send("PATCH", f"/ai/providers/quotas/{quota_id}/", json=fields)

    def delete_quota(self, quota_id: int) -> None:
        self._send("DELETE", f"/ai/providers/quotas/{quota_id}/")

    def quota_status(self, quota_id: int | None = None) -> Any:
        """One quota's status (used, remaining, reset date, near_limit), or every quota of the brand."""
        if quota_id is None:
            return self._send("GET", "/ai/providers/quotas/status/")
        return self._send("GET", f"/ai/providers/quotas/{quota_id}/quota_status/")

    def usage(self, **filters: Any) -> Iterator[dict]:
        return self.pages("/ai/usage/", **filters)

    def usage_dashboard(self, *, days: int = 30) -> dict:
        return self._send("GET", "/ai/usage/dashboard/", params={"days": days})

    def cost_breakdown(self, *, month: str | None = None, scope: str = "brand") -> dict:
        return self._send("GET", "/ai/usage/cost_breakdown/", params={"month": month, "scope": scope})

    def webhooks(self) -> Iterator[dict]:
        return self.pages("/ai/webhooks/")

    def create_webhook(self, *, url: str, description: str = "", is_active: bool = True) -> dict:
        """The answer carries the signing `secret` (shown once)."""
        return self._send(
            "POST", "/ai/webhooks/", json={"url": url, "description": description, "is_active": is_active}
        )

    def delete_webhook(self, webhook_id: int) -> None:
        self._send("DELETE", f"/ai/webhooks/{webhook_id}/")

    def webhook_deliveries(self, webhook_id: int) -> Iterator[dict]:
        return self.pages(f"/ai/webhooks/{webhook_id}/deliveries/")


def _clean(params: dict | None) -> dict | None:
    if not params:
        return None
    return {key: value for key, value in params.items() if value is not None}
