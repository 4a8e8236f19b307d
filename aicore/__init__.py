"""AI Core's Python client and command line (`aicore`)."""

from aicore.client import AICoreClient, AICoreError

__all__ = ["AICoreClient", "AICoreError"]
