"""The calendar feeds' API: serializers and views (routes in integrations/calendars/urls.py)."""
