import os

from django.core.management.base import BaseCommand

from business.services import user_provision


class Command(BaseCommand):
    help = "Create (idempotently) the demo company with brands Humari and Academy and a demo admin."

    def handle(self, *args, **options):
        password = os.environ.get("AICORE_DEMO_PASSWORD", "aicore-demo")
        user = user_provision(
            username="admin",
            password=password,
            company_name="Demo Company",
            admin_of=["Humari", "Academy"],
            company_admin=True,
            staff=True,
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: user '{user.username}' / password '{password}' "
                "(company admin of Humari and Academy, Django admin at /admin/)"
            )
        )
