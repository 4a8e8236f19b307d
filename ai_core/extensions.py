"""Serialising a job's OneToOne extensions (openai_job, usage) without ai_core depending on those apps."""

from django.core.exceptions import ObjectDoesNotExist
from django.forms.models import model_to_dict

_HIDDEN = {"id", "job", "brand", "job_type", "user"}


def job_extension(job, related_name: str) -> dict | None:
    try:
        extension = getattr(job, related_name)
    except (ObjectDoesNotExist, AttributeError):
        return None
    if extension is None:
        return None
    if hasattr(extension, "as_api_dict"):
        return extension.as_api_dict()
    data = model_to_dict(extension)
    return {
        key: (str(value) if hasattr(value, "quantize") else value) for key, value in data.items() if key not in _HIDDEN
    }
