"""Signing in and out of the portal (Django's session login; the API keeps its tokens)."""

from __future__ import annotations

from django.contrib.auth import logout
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods


class PortalLoginView(LoginView):
    """`/login/` with the fields `username` and `password`."""

    template_name = "portal/login.html"
    redirect_authenticated_user = True


@require_http_methods(["GET", "POST"])
def logout_view(request):
    """GET asks to confirm (a link must never sign anyone out); POST signs out."""
    if request.method == "POST":
        logout(request)
        return redirect("portal:home")
    return render(request, "portal/logout.html")
