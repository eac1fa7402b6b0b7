"""The one role check for HTML views: `role_required` (DRF endpoints use `labelapp.common.permissions`)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from labelapp.common.roles import user_has_role


def role_required(*roles: str, staff: bool = False):
    """Send anonymous users to the login page; refuse (403) users holding none of `roles` (staff hold every role).

    `staff=True` asks for a staff account instead of a role.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if staff and not request.user.is_staff:
                raise PermissionDenied("This needs a staff account.")
            if roles and not user_has_role(request.user, *roles):
                raise PermissionDenied(f"This page needs one of the roles: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
