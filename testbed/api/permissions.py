from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsOperator(BasePermission):
    """Facility staff (Django staff users)."""

    message = "Only facility operators may do this: ask an operator of the centre."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class IsOperatorOrReadOnly(BasePermission):
    message = "Only facility operators may change the catalogue: ask an operator of the centre."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or request.user.is_staff
