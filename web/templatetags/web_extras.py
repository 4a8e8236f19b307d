import json

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key, 0) if mapping else 0


@register.filter
def as_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
