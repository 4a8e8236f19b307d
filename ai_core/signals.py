"""Job lifecycle signals: apps that account for jobs (usage, quotas) hook in without ai_core knowing them."""

from django.dispatch import Signal

# Sent by the engine inside the transaction of a job's final write (completed, failed, timeout), so a
# receiver's rows (usage, quota settlement) commit or roll back with the final state. Arguments:
# job_pk, attempt, status, result (the provider's ChatResult or None), error_code.
job_finished = Signal()
