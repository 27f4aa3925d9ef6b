"""Tests of integrations.calendars: iCal feeds, their API and their portal page."""
