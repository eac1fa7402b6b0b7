from .roles import user_roles


def roles(request):
    """Expose the user's roles to templates as `roles`."""
    return {"roles": user_roles(request.user)}
