from django.dispatch import Signal

# Sent once a batch's last job became final, after commit (batches.services.batch_complete_if_done).
# Arguments: batch (a Batch), summary (batches.selectors.batch_summary of it).
batch_completed = Signal()
