"""The API's JSON body parser: kernel.jsonread's reading, its refusals as DRF 400s."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from kernel.jsonread import JSONRefused, json_parse


class JSONBodyRefused(ParseError):
    def __init__(self, refused: JSONRefused) -> None:
        super().__init__(refused.detail)
        self.error_code = refused.error_code


class SafeJSONParser(JSONParser):
    """JSONParser that turns pathological input (deep nesting, bad encodings) into a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"Not valid JSON: {exc}") from None
        try:
            # The body wraps the job's input_data (itself bounded by AICORE_MAX_JSON_DEPTH) in a few levels.
            return json_parse(text, max_depth=settings.AICORE_MAX_JSON_DEPTH + 4)
        except JSONRefused as refused:
            raise JSONBodyRefused(refused) from None
