import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from ai_core.maintenance import jobs_purge

UNITS = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'90d', '12h', '30m', '2w' (a bare number means days)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhmw]?)\s*", text)
    if not match:
        raise CommandError(f"--older-than must look like 90d, 12h, 30m or 2w, not {text!r}")
    return timedelta(**{UNITS[match.group(2) or "d"]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete finished jobs older than --older-than; usage rows and cost totals are kept."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, type=parse_age, help="e.g. 90d, 12h, 2w")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--dry-run", action="store_true", help="only count what would be purged")

    def handle(self, *args, older_than, batch_size, dry_run, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        count = jobs_purge(older_than=older_than, batch_size=batch_size, dry_run=dry_run)
        verb = "would purge" if dry_run else "purged"
        self.stdout.write(f"{verb} {count} finished job(s) older than {older_than}")
