"""ai_openai's hooks on the job lifecycle (ai_core/hooks.py), registered in AIOpenAIConfig.ready().

A job of an OpenAI-format model, or one submitted through /ai/openai/, gets its OpenAIJob row with it: a row
for core's creation to write (`rows_at_creation`: in its one statement, or its transaction). Its end writes the
row's token counts and the provider's response id (`on_final`: an `UpdateRows`, in the end's own statement),
for jobs the claim's `has_openai_row` probe found a row for (any other end skips it). A new input re-syncs it.
"""

from ai_core.hooks import Created, Final, Replanned, RowExists, UpdateRows
from ai_openai.models import OpenAIJob
from ai_openai.services import openai_job_new, openai_job_sync, openai_job_wanted

PROBES = {"has_openai_row": RowExists(OpenAIJob, "job")}


def rows_at_creation(created: list[Created]) -> list[tuple[int, OpenAIJob]]:
    return [
        (i, openai_job_new(choice=c.choice, input_data=c.input_data))
        for i, c in enumerate(created)
        if openai_job_wanted(choice=c.choice, always=c.openai)
    ]


def on_replanned(replans: list[Replanned]) -> None:
    for replan in replans:
        if replan.input_data is not None:  # a new input (a fallback switch keeps the row as it is)
            openai_job_sync(job=replan.job, choice=replan.choice, input_data=replan.input_data)


def _has_row(job) -> bool:
    """Whether the job has its OpenAI row: as its claim or the end's read probed it; unknown (a job of a
    batch's cancel): assumed, the update then finds none."""
    return getattr(job, "has_openai_row", True) is not False


def on_final(finals: list[Final]) -> list[UpdateRows]:
    """The row's token counts at the job's end, and the provider's response id when it gave one."""
    writes = []
    for final in finals:
        if not _has_row(final.job):
            continue
        result = final.result_data
        response_id = result.get("provider_response_id") if isinstance(result, dict) else None
        values = {
            "prompt_tokens": final.tokens.input_tokens,
            "completion_tokens": final.tokens.output_tokens,
            "total_tokens": final.tokens.total_tokens,
        }
        if response_id:
            values["openai_id"] = str(response_id)[:255]
        writes.append(UpdateRows(job_pk=final.job_pk, model=OpenAIJob, key="job", values=values))
    return writes


HOOKS = {"rows_at_creation": rows_at_creation, "on_replanned": on_replanned, "on_final": on_final}
