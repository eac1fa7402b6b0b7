"""Create (or reuse) an API client account in the api-client role and print its token."""
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from labelapp.common.roles import API_CLIENT


class Command(BaseCommand):
    help = "Create an api-client account (no password login) and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Account name, e.g. shop-frontend")
        parser.add_argument("--rotate", action="store_true", help="Replace an existing token with a new one.")

    def handle(self, *args, name: str, rotate: bool, **options):
        user, created = User.objects.get_or_create(username=name)
        if created:
            # A machine account: it authenticates with its token only.
            user.set_unusable_password()
            user.save()
        user.groups.add(Group.objects.get(name=API_CLIENT))
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _created = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
