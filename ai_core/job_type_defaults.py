"""The default job types and their input JSON Schemas (loaded by a data migration, editable in the admin)."""

MAX_TEXT = 200_000  # characters of one message / prompt / content

ECHO_OPTIONS = {
    "type": "object",
    "description": "Offline echo provider controls (tests, benchmarks, demos)",
    "properties": {
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 600_000},
        "chunks": {"type": "integer", "minimum": 1, "maximum": 1000},
        "fail": {"enum": ["transient", "permanent"]},
        "fail_times": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "additionalProperties": False,
}

MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"type": "string", "maxLength": MAX_TEXT},
        "name": {"type": "string", "maxLength": 64},
    },
}

COMMON = {
    "model": {"type": "string", "minLength": 1, "maxLength": 100},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200_000},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "echo": ECHO_OPTIONS,
    # Checked against the catalogue on submit (ai_core.services.fallback_models_clean).
    "fallback_models": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": "models to go on with, in order, when the model's provider is down",
    },
}

CHAT_SCHEMA = {
    "type": "object",
    "required": ["messages"],
    "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": 500, "items": MESSAGE}, **COMMON},
}

TEXT_GENERATION_SCHEMA = {
    "type": "object",
    "anyOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        "messages": {"type": "array", "minItems": 1, "maxItems": 500, "items": MESSAGE},
        **COMMON,
    },
}

CONTENT_ANALYSIS_SCHEMA = {
    "type": "object",
    "required": ["content"],
    "properties": {
        "content": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        "analysis_type": {"type": "string", "maxLength": 100},
        "instructions": {"type": "string", "maxLength": 10_000},
        **COMMON,
    },
}

EMBEDDING_INPUT_ITEMS = 2048

EMBEDDING_SCHEMA = {
    "type": "object",
    "required": ["input", "model"],
    "properties": {
        "input": {
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": EMBEDDING_INPUT_ITEMS,
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                },
            ]
        },
        "model": {"type": "string", "minLength": 1, "maxLength": 100},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": 4096},
    },
    "additionalProperties": False,
}

DEFAULT_JOB_TYPES = [
    {
        "name": "chat_completion",
        "description": "Conversation interactive avec l'IA",
        "category": "chat",
        "estimated_duration_seconds": 10,
        "requires_async": False,
        "timeout_seconds": 60,
        "max_attempts": 3,
        "input_schema": CHAT_SCHEMA,
    },
    {
        "name": "text_generation",
        "description": "Génération de texte à partir d'un prompt",
        "category": "generation",
        "estimated_duration_seconds": 30,
        "requires_async": True,
        "timeout_seconds": 300,
        "max_attempts": 3,
        "input_schema": TEXT_GENERATION_SCHEMA,
    },
    {
        "name": "content_analysis",
        "description": "Analyse de contenu existant",
        "category": "analysis",
        "estimated_duration_seconds": 45,
        "requires_async": True,
        "timeout_seconds": 300,
        "max_attempts": 3,
        "input_schema": CONTENT_ANALYSIS_SCHEMA,
    },
    {
        "name": "embedding",
        "description": "Vecteurs d'embedding d'un ou plusieurs textes",
        "category": "analysis",
        "estimated_duration_seconds": 2,
        "requires_async": False,
        "timeout_seconds": 60,
        "max_attempts": 3,
        "input_schema": EMBEDDING_SCHEMA,
    },
]
