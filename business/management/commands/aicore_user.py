import json

from django.core.management.base import BaseCommand, CommandError

from business.errors import ApplicationError
from business.models import Membership
from business.services import user_provision


class Command(BaseCommand):
    help = "Create or update a user (creating company and brands as needed); prints one JSON line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password")
        parser.add_argument("--company")
        parser.add_argument("--brand", action="append", default=[], help="member of this brand (repeatable)")
        parser.add_argument("--brand-admin", action="append", default=[], help="admin of this brand (repeatable)")
        parser.add_argument("--company-admin", action="store_true")
        parser.add_argument("--staff", action="store_true")

    def handle(self, *args, **options):
        try:
            user = user_provision(
                username=options["username"],
                password=options["password"],
                company_name=options["company"],
                member_of=options["brand"],
                admin_of=options["brand_admin"],
                company_admin=options["company_admin"],
                staff=options["staff"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        memberships = Membership.objects.filter(user=user).select_related("brand").order_by("brand_id")
        out = {
            "user_id": user.id,
            "company": {"id": user.company.id, "name": user.company.name} if user.company_id else None,
            "brands": [{"id": m.brand.id, "name": m.brand.name, "role": m.role} for m in memberships],
        }
        self.stdout.write(json.dumps(out))
