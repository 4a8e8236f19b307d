"""Which provider client answers a model: the provider catalogue decides (ai_providers.services).

Only the runner still imports the seam from here; it moves to `ai_providers.services.client_for_model` with the
engine's next change (issue 11), and this module goes.
"""

from ai_providers.services import CatalogueBound, client_for_model

__all__ = ["CatalogueBound", "client_for_model"]
