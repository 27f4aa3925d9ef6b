"""Organisations, people, bookings and the allocation rows that hold units and devices.

The invariant "two active allocations of one unit or device never overlap" is enforced by
PostgreSQL exclusion constraints (see migration 0002); the allocation service's locks are
the plan, these constraints are the backstop.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.postgres.fields import RangeOperators
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from booking.choices import (
    BookingStatus,
    Enforcement,
    LedgerKind,
    OrgCategory,
    Region,
    Role,
)
from booking.validators import validate_business_number
from equipment.models import AcceleratorPool, Device, EquipmentType, EquipmentUnit, Node
from testbed.choices import Channel, KeyScope
from testbed.db import PostgresExclusionConstraint, TsTzRange


class Organization(models.Model):
    """A company, university, institute or public body whose members book."""

    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=200)
    business_number = models.CharField(
        _("business registration number (사업자등록번호)"),
        max_length=12,
        blank=True,
        validators=[validate_business_number],
    )
    category = models.CharField(_("category"), max_length=20, choices=OrgCategory.choices)
    region = models.CharField(_("region"), max_length=20, choices=Region.choices)
    youth_startup = models.BooleanField(_("youth start-up (청년창업)"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        constraints = [
            models.UniqueConstraint(
                fields=["business_number"],
                condition=~Q(business_number=""),
                name="booking_organization_business_number_unique",
                violation_error_message=_(
                    "Another organisation already has this business registration number."
                ),
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in an organisation: manager or member."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"],
                name="booking_membership_unique",
                violation_error_message=_("This user is already a member of this organisation."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class Invitation(models.Model):
    """A manager's invitation of an existing account into an organisation: it takes effect only
    when that person accepts it, so adding someone never captures their account."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations"
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    accepted = models.BooleanField(null=True, help_text=_("Empty while it waits for an answer."))

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"],
                condition=Q(answered_at__isnull=True),
                name="booking_invitation_one_open",
                violation_error_message=_("This person already has an open invitation."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.organization} ({self.role})"


class Qualification(models.Model):
    """A user's training on an equipment type, valid until a date (inclusive)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="qualifications"
    )
    equipment_type = models.ForeignKey(
        EquipmentType, on_delete=models.CASCADE, related_name="qualifications"
    )
    valid_until = models.DateField(_("valid until"))
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notes = models.CharField(_("notes"), max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "equipment_type"]
        verbose_name = _("qualification")
        verbose_name_plural = _("qualifications")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "equipment_type"],
                name="booking_qualification_unique",
                violation_error_message=_(
                    "This user already has a qualification for this type: extend it instead."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.equipment_type.code} until {self.valid_until}"


class ApiKey(models.Model):
    """An organisation's API key (made by a manager): scoped and revocable. Only its hash is kept.

    A key acts as its organisation with exactly its scopes, through a service account of its own
    (`user`): never with the rights of the person who made it, never for another organisation.
    """

    SCOPES = tuple(KeyScope.values)
    is_api_key = True  # how testbed/api/permissions.py tells a key from a person's token

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_key",
        help_text=_("The key's own service account: bookings made with the key name it."),
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=128)
    scopes = models.JSONField(_("scopes"), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Booking(models.Model):
    """A request for `quantity` units of an equipment type, or devices of a pool, over [start, end)."""

    # Indexes are deliberate (Meta.indexes says what each serves): every insert and status change
    # updates each one, and PostgreSQL plans every statement against all of them.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="bookings", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings"
    )
    equipment_type = models.ForeignKey(
        EquipmentType, null=True, blank=True, on_delete=models.PROTECT, related_name="bookings"
    )
    pool = models.ForeignKey(
        AcceleratorPool, null=True, blank=True, on_delete=models.PROTECT, related_name="bookings"
    )
    pinned_unit = models.ForeignKey(
        EquipmentUnit,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("The unit the booker asked for by code, if any."),
        db_index=False,
    )
    quantity = models.PositiveIntegerField(
        _("quantity"), default=1, validators=[MinValueValidator(1)]
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    purpose = models.CharField(_("purpose"), max_length=500, blank=True)
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=BookingStatus.choices,
        default=BookingStatus.PENDING,
    )
    channel = models.CharField(
        _("channel"), max_length=10, choices=Channel.choices, default=Channel.API
    )
    rejection_code = models.CharField(_("rejection code"), max_length=40, blank=True)
    rejection_detail = models.CharField(_("rejection detail"), max_length=500, blank=True)
    alternatives = models.JSONField(_("alternative windows"), default=list, blank=True)
    over_quota = models.BooleanField(_("over quota (soft grant)"), default=False)
    affected_by_maintenance = models.ForeignKey(
        "equipment.MaintenanceWindow",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="affected_bookings",
        db_index=False,
    )
    actual_start = models.DateTimeField(_("checked in at"), null=True, blank=True)
    actual_end = models.DateTimeField(_("checked out at"), null=True, blank=True)
    cancel_reason = models.CharField(_("cancellation reason"), max_length=500, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    final_price_krw = models.BigIntegerField(_("final price (KRW)"), null=True, blank=True)
    idle_flagged_at = models.DateTimeField(_("flagged idle at"), null=True, blank=True)
    reclaimed_at = models.DateTimeField(_("reclaimed at"), null=True, blank=True)
    round = models.ForeignKey(
        "booking.ContestedRound",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bookings",
        help_text=_("Set while the booking waits for a contested round's cutoff."),
        db_index=False,
    )
    replaces = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replaced_by",
        help_text=_(
            "A move: the booking this one takes over from once confirmed (kept until then)."
        ),
        db_index=False,
    )
    allocation_attempts = models.PositiveIntegerField(default=0)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start", "-id"]
        verbose_name = _("booking")
        verbose_name_plural = _("bookings")
        indexes = [
            # An organisation's bookings by time (lists, usage, quota), and its foreign key.
            models.Index(fields=["organization", "start"], name="booking_org_start_idx"),
            # Reports over all organisations select bookings by start (the live part of a month).
            models.Index(fields=["start"], name="booking_start_idx"),
            # The deciders' claim and the lost-task sweep: only pending rows, so the claim stays
            # as fast at a million bookings as at a thousand, autovacuum or not.
            models.Index(
                fields=["id"],
                name="booking_pending_idx",
                condition=models.Q(status="pending"),
            ),
            # The lifecycle sweeps (no-shows, start, completion, expiry): bookings still live.
            models.Index(
                fields=["start"],
                name="booking_live_start_idx",
                condition=models.Q(
                    status__in=["pending", "awaiting_approval", "confirmed", "active"]
                ),
            ),
            # Foreign keys that are mostly empty: indexed where set, for deletes and lookups.
            models.Index(
                fields=["affected_by_maintenance"],
                name="booking_maintenance_idx",
                condition=models.Q(affected_by_maintenance__isnull=False),
            ),
            models.Index(
                fields=["pinned_unit"],
                name="booking_pinned_unit_idx",
                condition=models.Q(pinned_unit__isnull=False),
            ),
            models.Index(
                fields=["round"], name="booking_round_idx", condition=models.Q(round__isnull=False)
            ),
            models.Index(
                fields=["replaces"],
                name="booking_replaces_idx",
                condition=models.Q(replaces__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")),
                name="booking_booking_end_after_start",
                violation_error_message=_("A booking must end after it starts."),
            ),
            models.CheckConstraint(
                condition=(Q(equipment_type__isnull=False) & Q(pool__isnull=True))
                | (Q(equipment_type__isnull=True) & Q(pool__isnull=False)),
                name="booking_booking_one_resource",
                violation_error_message=_("A booking is for one equipment type or one pool."),
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=1),
                name="booking_booking_quantity_positive",
                violation_error_message=_("Quantity must be at least 1."),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.resource_code} ×{self.quantity} {self.start:%Y-%m-%d %H:%M}"

    @property
    def resource(self) -> EquipmentType | AcceleratorPool:
        return self.equipment_type or self.pool  # type: ignore[return-value]

    @property
    def resource_code(self) -> str:
        return self.equipment_type.code if self.equipment_type_id else self.pool.code  # type: ignore[union-attr]

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def unit_hours(self) -> float:
        return self.quantity * self.duration.total_seconds() / 3600


class Allocation(models.Model):
    """One unit or device given to a booking over [start, end) (end includes the type's buffer).

    `active` is true while the booking holds it (awaiting approval, confirmed, in use,
    completed). PostgreSQL refuses two active allocations of one unit or device that overlap.
    """

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="allocations")
    unit = models.ForeignKey(
        EquipmentUnit, null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["booking_id", "id"]
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")
        indexes = [
            models.Index(
                fields=["unit", "start", "end"],
                name="booking_alloc_unit_time_idx",
                condition=Q(active=True),
            ),
            models.Index(
                fields=["device", "start", "end"],
                name="booking_alloc_device_time_idx",
                condition=Q(active=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")),
                name="booking_allocation_end_after_start",
                violation_error_message=_("An allocation must end after it starts."),
            ),
            models.CheckConstraint(
                condition=(Q(unit__isnull=False) & Q(device__isnull=True))
                | (Q(unit__isnull=True) & Q(device__isnull=False)),
                name="booking_allocation_one_target",
                violation_error_message=_("An allocation holds one unit or one device."),
            ),
            PostgresExclusionConstraint(
                name="booking_allocation_unit_no_overlap",
                expressions=[
                    ("unit", RangeOperators.EQUAL),
                    (TsTzRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                condition=Q(active=True) & Q(unit__isnull=False),
                violation_error_message=_("This unit is already booked at an overlapping time."),
            ),
            PostgresExclusionConstraint(
                name="booking_allocation_device_no_overlap",
                expressions=[
                    ("device", RangeOperators.EQUAL),
                    (TsTzRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                condition=Q(active=True) & Q(device__isnull=False),
                violation_error_message=_("This device is already booked at an overlapping time."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.unit or self.device} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


class IdempotencyRecord(models.Model):
    """A POST's Idempotency-Key and what it created, so a repeat returns the first result."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    object_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "endpoint", "key"], name="booking_idempotency_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key} → {self.object_id}"


class QuotaGrant(models.Model):
    """An allowance of unit-hours for an organisation on a scope, over a period (dates inclusive)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="quota_grants"
    )
    scope = models.CharField(
        _("scope"),
        max_length=40,
        help_text=_("A resource code, a centre code, or * for everything."),
    )
    period_start = models.DateField(_("period start"))
    period_end = models.DateField(_("period end (inclusive)"))
    limit_hours = models.DecimalField(_("limit (unit-hours)"), max_digits=14, decimal_places=2)
    enforcement = models.CharField(
        _("enforcement"), max_length=10, choices=Enforcement.choices, default=Enforcement.HARD
    )
    notes = models.CharField(_("notes"), max_length=300, blank=True)
    reminded_80 = models.BooleanField(default=False)
    reminded_100 = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "period_start", "scope"]
        verbose_name = _("quota grant")
        verbose_name_plural = _("quota grants")
        constraints = [
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")),
                name="booking_quotagrant_period_order",
                violation_error_message=_("The period must end on or after its start."),
            ),
            models.CheckConstraint(
                condition=Q(limit_hours__gte=0),
                name="booking_quotagrant_limit_nonnegative",
                violation_error_message=_("The limit cannot be negative."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.scope} {self.period_start}–{self.period_end}: {self.limit_hours} h"


class QuotaLedgerEntry(models.Model):
    """Append-only movements on a grant. Positive hours use the grant; negative give back.

    hold (at confirmation, +), release (at cancellation or reclaim, −), consume (at completion,
    + actual use, with a matching release of the hold), adjust (operator, ±, with a reason).
    """

    grant = models.ForeignKey(QuotaGrant, on_delete=models.PROTECT, related_name="ledger")
    booking = models.ForeignKey(
        Booking, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger"
    )
    kind = models.CharField(max_length=10, choices=LedgerKind.choices)
    hours = models.DecimalField(max_digits=14, decimal_places=4)
    reason = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("quota ledger entry")
        verbose_name_plural = _("quota ledger entries")

    def __str__(self) -> str:
        return f"{self.kind} {self.hours} h on grant {self.grant_id}"


class DiscountRule(models.Model):
    """A discount held as data, e.g. Gwangju-based companies 50%, youth start-ups 50%.

    A rule applies when every condition it sets matches; blank conditions match anything.
    When several apply, the largest percentage wins (discounts do not stack).
    """

    name = models.CharField(_("name"), max_length=100)
    category = models.CharField(
        _("organisation category"), max_length=20, choices=OrgCategory.choices, blank=True
    )
    region = models.CharField(_("region"), max_length=20, choices=Region.choices, blank=True)
    youth_startup = models.BooleanField(_("youth start-ups only"), default=False)
    percent = models.DecimalField(_("discount (%)"), max_digits=5, decimal_places=2)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["-percent", "name"]
        verbose_name = _("discount rule")
        verbose_name_plural = _("discount rules")
        constraints = [
            models.CheckConstraint(
                condition=Q(percent__gte=0) & Q(percent__lte=100),
                name="booking_discountrule_percent_range",
                violation_error_message=_("A discount is between 0 and 100 percent."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.percent}%)"

    def applies_to(self, organization: Organization) -> bool:
        if self.category and organization.category != self.category:
            return False
        if self.region and organization.region != self.region:
            return False
        if self.youth_startup and not organization.youth_startup:
            return False
        return True
