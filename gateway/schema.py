"""/v1/ in the OpenAPI document: OpenAI's request and response shapes, written here as OpenAPI schemas.

The gateway's views are plain Django views (no DRF request/response cycle on the hot path: see views.py), so
drf-spectacular cannot discover them; this post-processing hook adds them, as ai_core.api.events does for the
SSE streams. The shapes are the subset of OpenAI's that gateway.wire reads and writes.
"""

from django.core.exceptions import ImproperlyConfigured

REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


_TEXT = {"type": "string"}
_INT = {"type": "integer"}
_NUMBER = {"type": "number"}

SCHEMAS = {
    "OpenAIError": {
        "type": "object",
        "description": "OpenAI's error shape: every OpenAI client maps its status to its own exception class.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": _TEXT,
                    "type": {**_TEXT, "description": "invalid_request_error, authentication_error, ..."},
                    "code": {**_TEXT, "nullable": True, "description": "Our error_code (QUOTA_EXCEEDED, ...)"},
                    "param": {**_TEXT, "nullable": True, "description": "The request parameter at fault"},
                },
            }
        },
    },
    "OpenAIChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {**_TEXT, "description": "system, user, assistant or tool"},
            "content": {
                "nullable": True,
                "description": "Text, or text parts (an assistant message with tool calls may have none)",
                "oneOf": [
                    _TEXT,
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {"type": {"type": "string", "enum": ["text"]}, "text": _TEXT},
                        },
                    },
                ],
            },
            "name": _TEXT,
            "tool_call_id": _TEXT,
            "tool_calls": {"type": "array", "items": _ref("OpenAIToolCall")},
        },
    },
    "OpenAIToolCall": {
        "type": "object",
        "required": ["id", "type", "function"],
        "properties": {
            "id": _TEXT,
            "type": {"type": "string", "enum": ["function"]},
            "function": {
                "type": "object",
                "required": ["name", "arguments"],
                "properties": {"name": _TEXT, "arguments": {**_TEXT, "description": "JSON text"}},
            },
        },
    },
    "OpenAIChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {**_TEXT, "description": "Any model of the catalogue (GET /v1/models), e.g. echo-1"},
            "messages": {"type": "array", "minItems": 1, "items": _ref("OpenAIChatMessage")},
            "temperature": _NUMBER,
            "top_p": _NUMBER,
            "max_tokens": _INT,
            "max_completion_tokens": _INT,
            "n": {"type": "integer", "enum": [1], "description": "Only one choice per call"},
            "stream": {"type": "boolean", "default": False},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "tools": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "function"],
                    "properties": {
                        "type": {"type": "string", "enum": ["function"]},
                        "function": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": _TEXT, "description": _TEXT, "parameters": {"type": "object"}},
                        },
                    },
                },
            },
            "tool_choice": {"oneOf": [_TEXT, {"type": "object"}], "description": "none, auto, required or a tool"},
            "response_format": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                    "json_schema": {"type": "object"},
                },
            },
            "stop": {"oneOf": [_TEXT, {"type": "array", "items": _TEXT}]},
            "reasoning_effort": _TEXT,
            "user": {**_TEXT, "description": "Your end user, recorded in the job's description"},
            "metadata": {"type": "object", "additionalProperties": _TEXT},
        },
    },
    "OpenAIUsage": {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT},
    },
    "OpenAIChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {**_TEXT, "description": "chatcmpl-<the job's job_id>"},
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": _INT,
            "model": _TEXT,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {
                        "index": _INT,
                        "message": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"type": "string", "enum": ["assistant"]},
                                "content": {**_TEXT, "nullable": True},
                                "tool_calls": {"type": "array", "items": _ref("OpenAIToolCall")},
                            },
                        },
                        "finish_reason": {**_TEXT, "description": "stop, length or tool_calls"},
                    },
                },
            },
            "usage": _ref("OpenAIUsage"),
        },
    },
    "OpenAIEmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {**_TEXT, "description": "An embedding model of the catalogue, e.g. echo-embed-1"},
            "input": {"oneOf": [_TEXT, {"type": "array", "minItems": 1, "items": _TEXT}]},
            "dimensions": _INT,
            "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"},
            "user": _TEXT,
        },
    },
    "OpenAIEmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"type": "string", "enum": ["embedding"]},
                        "index": _INT,
                        "embedding": {
                            "oneOf": [{"type": "array", "items": _NUMBER}, _TEXT],
                            "description": "Floats, or base64 of little-endian float32 with encoding_format=base64",
                        },
                    },
                },
            },
            "model": _TEXT,
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {"prompt_tokens": _INT, "total_tokens": _INT},
            },
        },
    },
    "OpenAIModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "created", "owned_by"],
                    "properties": {
                        "id": _TEXT,
                        "object": {"type": "string", "enum": ["model"]},
                        "created": _INT,
                        "owned_by": {**_TEXT, "description": "The provider"},
                    },
                },
            },
        },
    },
}

_ERRORS = {
    "400": "invalid_parameter, MALFORMED_JSON, INVALID_UNICODE, VALIDATION_ERROR, PROVIDER_REJECTED, ...",
    "401": "Missing, unknown, revoked or expired API key",
    "403": "The key lacks the `gateway` scope, or X-Brand-ID names another brand (BRAND_ACCESS_DENIED)",
    "404": "Unknown model (MODEL_NOT_SUPPORTED)",
    "405": "Wrong HTTP method",
    "409": "The job was cancelled meanwhile (JOB_CANCELLED), or Idempotency-Key reused with another body",
    "429": "Over a quota of the brand, company or key (QUOTA_EXCEEDED), or no provider capacity within "
    "X-AICore-Max-Wait (CAPACITY_WAIT_EXCEEDED, with Retry-After)",
    "502": "The provider failed after the job's retries",
    "504": "The job is not finished yet: fetch it from /ai/jobs/{id}/",
}
_JOB_HEADER = {
    "X-AICore-Job-Id": {"description": "The job of this call, in /ai/jobs/{id}/", "schema": {"type": "string"}}
}
_BRAND = {
    "in": "header",
    "name": "X-Brand-ID",
    "required": False,
    "schema": {"type": "integer"},
    "description": "Optional: the key's own brand (any other brand is a 403)",
}
_IDEMPOTENCY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "The same key again answers the same job instead of calling the provider twice",
}
_BACKGROUND = {
    "in": "header",
    "name": "X-AICore-Background",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false"]},
    "description": "With `true`, a stream whose client hangs up runs on to its end instead of being cancelled",
}
_MAX_WAIT = {
    "in": "header",
    "name": "X-AICore-Max-Wait",
    "required": False,
    "schema": {"type": "number", "minimum": 0, "maximum": 300, "default": 30},
    "description": "Seconds the call may wait for provider capacity before answering 429 CAPACITY_WAIT_EXCEEDED",
}


def _json(name: str) -> dict:
    return {"application/json": {"schema": _ref(name)}}


def _operation(*, operation_id, summary, description, codes, ok, ok_content, parameters, body=None) -> dict:
    responses = {"200": {"description": ok, "content": ok_content}}
    if body:  # a call: it is a job
        responses["200"]["headers"] = _JOB_HEADER
    for code in codes:
        responses[code] = {"description": _ERRORS[code], "content": _json("OpenAIError")}
    operation = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["v1"],
        "security": [{"brandApiKey": []}],
        "parameters": parameters,
        "responses": responses,
    }
    if body:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation


def document_gateway(result, generator, request, public):
    """drf-spectacular post-processing hook: the OpenAI-compatible /v1/ endpoints in the OpenAPI document."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if set(SCHEMAS) & set(schemas):
        raise ImproperlyConfigured(f"gateway schemas would replace components: {set(SCHEMAS) & set(schemas)}")
    schemas.update(SCHEMAS)
    calls = ("400", "401", "403", "404", "409", "429", "502", "504")
    chat = _operation(
        operation_id="v1_chat_completions",
        summary="Create a chat completion (OpenAI-compatible)",
        description=(
            "OpenAI's chat completion with a brand API key holding the `gateway` scope: the call becomes an AIJob "
            "of type `chat_completion` of the key's brand (reservation, usage, cost, events, webhooks). With "
            "`stream: true` the answer is SSE `chat.completion.chunk` events ending in `data: [DONE]`; a client "
            "that hangs up cancels the job unless X-AICore-Background is true."
        ),
        codes=calls,
        ok="The completion (or its SSE stream)",
        ok_content={**_json("OpenAIChatCompletion"), "text/event-stream": {"schema": {"type": "string"}}},
        parameters=[_BRAND, _IDEMPOTENCY, _BACKGROUND, _MAX_WAIT],
        body="OpenAIChatCompletionRequest",
    )
    embeddings = _operation(
        operation_id="v1_embeddings",
        summary="Create embeddings (OpenAI-compatible)",
        description=(
            "OpenAI's embeddings with a brand API key holding the `gateway` scope: one `embedding` job per call, "
            "priced per input token. `echo-*` models answer deterministic offline vectors."
        ),
        codes=calls,
        ok="One vector per input",
        ok_content=_json("OpenAIEmbeddingList"),
        parameters=[_BRAND, _IDEMPOTENCY, _MAX_WAIT],
        body="OpenAIEmbeddingRequest",
    )
    models = _operation(
        operation_id="v1_models_list",
        summary="List the models this brand may call (OpenAI-compatible)",
        description=(
            "The active models of the catalogue whose provider has a key for the key's company (its own "
            "credential or the operator's), in OpenAI's list shape."
        ),
        codes=("401", "403"),
        ok="The models",
        ok_content=_json("OpenAIModelList"),
        parameters=[_BRAND],
    )
    result["paths"]["/v1/chat/completions"] = {"post": chat}
    result["paths"]["/v1/embeddings"] = {"post": embeddings}
    result["paths"]["/v1/models"] = {"get": models}
    return result
