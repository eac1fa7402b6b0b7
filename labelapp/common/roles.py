"""Roles are Django groups; staff and superusers hold every role."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

LABELLER = "labeller"
REVIEWER = "reviewer"
API_CLIENT = "api-client"
ALL_ROLES = (LABELLER, REVIEWER, API_CLIENT)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    """Return the roles a user holds."""
    if not user.is_authenticated:
        return set()
    if user.is_superuser or user.is_staff:
        return set(ALL_ROLES)
    cached = getattr(user, "_labelapp_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._labelapp_roles = cached
    return cached


def user_has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    """Return whether the user holds any of the roles."""
    return bool(user_roles(user) & set(roles))
