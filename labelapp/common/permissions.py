"""The one set of DRF permissions, by role (Django groups; staff hold every role). HTML views use
`labelapp.common.access.role_required`."""
from __future__ import annotations

from rest_framework.permissions import BasePermission

from .roles import API_CLIENT, LABELLER, REVIEWER, user_has_role


def role_permission(*roles: str) -> type[BasePermission]:
    """Return a permission class granting access to users holding any of `roles`."""

    class HasRole(BasePermission):
        message = f"This endpoint needs one of the roles: {', '.join(roles)}."

        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and user_has_role(request.user, *roles))

    HasRole.__name__ = "HasRole_" + "_".join(role.replace("-", "_") for role in roles)
    return HasRole


CatalogueReader = role_permission(LABELLER, REVIEWER, API_CLIENT)
StaffReader = role_permission(LABELLER, REVIEWER)
Labeller = role_permission(LABELLER)
Reviewer = role_permission(REVIEWER)
SimilarReader = role_permission(API_CLIENT, REVIEWER)  # the shoppers' site (and reviewers checking it)
