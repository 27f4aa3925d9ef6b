"""Calendar feeds: a secret address (only its hash kept) that lists bookings as iCalendar.

A feed belongs to one person (`owner`) and covers their own bookings, one organisation's, or
(operators) one equipment type's or pool's. The address is `/calendar/tbc_<prefix>_<secret>.ics`:
`token_prefix` finds the row, `token_hash` (SHA-256 of the whole token) proves the secret. The
full address is shown once, when the feed is made or its token regenerated.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from booking.models import Organization
from equipment.models import AcceleratorPool, EquipmentType
from integrations.calendars.choices import FeedLanguage, FeedScope


class CalendarFeed(models.Model):
    """One person's subscription address for their bookings, an organisation's or a resource's."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feeds"
    )
    scope = models.CharField(_("범위"), max_length=20, choices=FeedScope.choices)
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="calendar_feeds",
    )
    equipment_type = models.ForeignKey(
        EquipmentType,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="calendar_feeds",
    )
    pool = models.ForeignKey(
        AcceleratorPool,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="calendar_feeds",
    )
    language = models.CharField(
        _("언어"),
        max_length=5,
        choices=FeedLanguage.choices,
        default=FeedLanguage.KO,
        help_text=_("일정 제목의 언어. 주소에 ?lang=en 또는 ?lang=ko를 붙이면 그것이 우선합니다."),
    )
    token_prefix = models.CharField(
        pgettext_lazy("calendar", "토큰 접두사"), max_length=16, unique=True
    )
    token_hash = models.CharField(max_length=64, editable=False)
    token_created_at = models.DateTimeField(
        pgettext_lazy("calendar", "주소를 만든 때"), default=timezone.now
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        pgettext_lazy("calendar", "마지막으로 가져간 때"), null=True, blank=True
    )

    class Meta:
        ordering = ["owner", "scope", "pk"]
        verbose_name = _("캘린더 구독 주소")
        verbose_name_plural = _("캘린더 구독 주소")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        scope=FeedScope.USER,
                        organization__isnull=True,
                        equipment_type__isnull=True,
                        pool__isnull=True,
                    )
                    | Q(
                        scope=FeedScope.ORGANIZATION,
                        organization__isnull=False,
                        equipment_type__isnull=True,
                        pool__isnull=True,
                    )
                    | Q(
                        scope=FeedScope.RESOURCE,
                        organization__isnull=True,
                        equipment_type__isnull=False,
                        pool__isnull=True,
                    )
                    | Q(
                        scope=FeedScope.RESOURCE,
                        organization__isnull=True,
                        equipment_type__isnull=True,
                        pool__isnull=False,
                    )
                ),
                name="calendars_calendarfeed_scope_target",
                violation_error_message=_(
                    "A personal feed names nothing; an organisation feed names the organisation; "
                    "a resource feed names one equipment type or one pool."
                ),
            ),
            models.UniqueConstraint(
                fields=["owner"],
                condition=Q(scope=FeedScope.USER),
                name="calendars_calendarfeed_one_personal",
                violation_error_message=_("You already have a personal feed: regenerate it."),
            ),
            models.UniqueConstraint(
                fields=["owner", "organization"],
                condition=Q(scope=FeedScope.ORGANIZATION),
                name="calendars_calendarfeed_one_per_organization",
                violation_error_message=_(
                    "You already have a feed of this organisation: regenerate it."
                ),
            ),
            models.UniqueConstraint(
                fields=["owner", "equipment_type"],
                condition=Q(scope=FeedScope.RESOURCE, equipment_type__isnull=False),
                name="calendars_calendarfeed_one_per_equipment_type",
                violation_error_message=_(
                    "You already have a feed of this resource: regenerate it."
                ),
            ),
            models.UniqueConstraint(
                fields=["owner", "pool"],
                condition=Q(scope=FeedScope.RESOURCE, pool__isnull=False),
                name="calendars_calendarfeed_one_per_pool",
                violation_error_message=_(
                    "You already have a feed of this resource: regenerate it."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner} · {self.scope} {self.target_code} ({self.token_prefix}…)"

    @property
    def resource(self) -> EquipmentType | AcceleratorPool | None:
        return self.equipment_type or self.pool

    @property
    def target_code(self) -> str:
        """The organisation's slug, the resource's code, or '' for a personal feed."""
        if self.organization_id:
            return self.organization.slug  # type: ignore[union-attr]
        resource = self.resource
        return resource.code if resource is not None else ""
