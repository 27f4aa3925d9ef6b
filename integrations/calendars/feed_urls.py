"""Public feed addresses (secret token in the path), included at /calendar/."""

urlpatterns: list = []
