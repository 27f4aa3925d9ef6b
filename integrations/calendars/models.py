"""Models of integrations.calendars."""
