"""Create the admin account (and the demo role accounts) if missing, and print how to log in."""
import os

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from labelapp.common.roles import LABELLER, REVIEWER


class Command(BaseCommand):
    help = "Create an admin (superuser) and, with --demo-users, a labeller and a reviewer; print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))
        parser.add_argument("--demo-users", action="store_true", help="Also create 'labeller' and 'reviewer'.")

    def handle(self, *args, username: str, demo_users: bool, **options):
        password = os.environ.get("ADMIN_PASSWORD")
        if not password:
            if not settings.DEBUG:
                raise CommandError("Set ADMIN_PASSWORD: outside DEBUG there is no default password.")
            password = "admin"
        accounts = [(username, password, None)]
        if demo_users:
            accounts += [("labeller", password, LABELLER), ("reviewer", password, REVIEWER)]
        for name, pw, role in accounts:
            user, created = User.objects.get_or_create(username=name)
            if created:
                user.set_password(pw)
                user.is_staff = user.is_superuser = role is None
                user.save()
            if role:
                user.groups.add(Group.objects.get(name=role))
            state = "created" if created else "exists (password unchanged)"
            shown = pw if created else "(as set before)"
            self.stdout.write(f"  {name:<9} password: {shown:<16} role: {role or 'admin'} — {state}")
