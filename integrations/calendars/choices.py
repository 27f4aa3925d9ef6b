"""Choices of calendar feeds: what a feed covers (its scope) and the language of its titles."""

from django.db import models
from django.utils.translation import pgettext_lazy


class FeedScope(models.TextChoices):
    """Whose bookings a feed lists. The owner's rights are checked again on every fetch."""

    USER = "user", pgettext_lazy("calendar", "내 예약")
    ORGANIZATION = "organization", pgettext_lazy("calendar", "기관 예약")
    RESOURCE = "resource", pgettext_lazy("calendar", "자원 예약 (운영자)")


class FeedLanguage(models.TextChoices):
    KO = "ko", "한국어"
    EN = "en", "English"
