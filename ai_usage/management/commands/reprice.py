"""Recompute usage costs of a period at the prices in effect (after a price correction in the catalogue)."""

from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ai_usage.services import usage_reprice


def _day(value: str) -> datetime:
    try:
        return timezone.make_aware(datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time.min))
    except ValueError:
        raise CommandError(f"{value!r} is not a YYYY-MM-DD date") from None


class Command(BaseCommand):
    help = "Reprice the usage of [--since, --until) at the catalogue's prices in effect when each job ran."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="first day, YYYY-MM-DD (included)")
        parser.add_argument("--until", required=True, help="last day, YYYY-MM-DD (excluded)")
        parser.add_argument(
            "--by",
            choices=["priced_at"],
            default="priced_at",
            help="which instant selects the rows (the one their price was taken at)",
        )
        parser.add_argument("--model", help="only this model")
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    def handle(self, *args, **options):
        since, until = _day(options["since"]), _day(options["until"])
        if until <= since:
            raise CommandError("--until must be after --since")
        report = usage_reprice(since=since, until=until, model_name=options["model"], dry_run=options["dry_run"])
        verb = "would change" if report["dry_run"] else "changed"
        self.stdout.write(f"{report['rows']} usage row(s) {verb}; cost delta ${report['delta']}")
