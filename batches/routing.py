"""Routing of completion_window "24h" jobs through provider Batch APIs (run by the worker's upkeep loop)."""

from batches.services import batches_complete_open


def upkeep_round() -> None:
    """One round: complete the batches whose jobs all ended."""
    batches_complete_open()
