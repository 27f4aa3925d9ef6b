"""Inventory models, NetBox-style: a type (what can be booked) vs its physical units.

Equipment: Center → EquipmentType (one of the 77) → EquipmentUnit (one physical item).
Accelerators: Center → AcceleratorPool (identical cards) → Node → Device (card or partition).
Resource codes are unique across equipment types and pools, so an API `resource=CODE` is
never ambiguous.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from equipment.choices import (
    AcceleratorKind,
    DeviceStatus,
    Field,
    NodeStatus,
    OperatingMode,
    PartitionKind,
    Phase,
    UnitStatus,
)

code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    _("Use letters, digits, dot, dash or underscore, starting with a letter or digit."),
)
weekdays_validator = RegexValidator(
    r"^[0-6]{0,7}$", _("List the open weekdays as digits, Monday=0 … Sunday=6, e.g. 01234.")
)


class Center(models.Model):
    """A site that runs equipment or accelerators (a demonstration centre, a data centre)."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name (Korean)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200)
    field = models.CharField(_("field"), max_length=20, choices=Field.choices)
    operator = models.CharField(_("operator"), max_length=200, blank=True)
    address = models.CharField(_("address"), max_length=300, blank=True)
    timezone = models.CharField(_("time zone"), max_length=50, default="Asia/Seoul")

    class Meta:
        ordering = ["code"]
        verbose_name = _("centre")
        verbose_name_plural = _("centres")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class BookingPolicy(models.Model):
    """The booking rules a bookable resource carries (equipment type or accelerator pool).

    Times are in the facility's zone. `opens_at`/`closes_at` empty means open around the clock.
    """

    slot_minutes = models.PositiveIntegerField(
        _("slot (minutes)"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_("Bookings start and end on multiples of this (60 = hourly, 1440 = daily)."),
    )
    min_minutes = models.PositiveIntegerField(_("minimum duration (minutes)"), default=30)
    max_minutes = models.PositiveIntegerField(_("maximum duration (minutes)"), default=120)
    min_lead_minutes = models.PositiveIntegerField(
        _("minimum lead time (minutes)"),
        default=0,
        help_text=_("How long before its start a booking must be made."),
    )
    max_lead_days = models.PositiveIntegerField(
        _("maximum lead time (days)"), default=30, help_text=_("How far ahead a booking may start.")
    )
    buffer_minutes = models.PositiveIntegerField(
        _("buffer (minutes)"),
        default=0,
        help_text=_("Kept free before and after each booking of one unit (set-up, cleaning)."),
    )
    opens_at = models.TimeField(_("opens at"), null=True, blank=True)
    closes_at = models.TimeField(_("closes at"), null=True, blank=True)
    open_weekdays = models.CharField(
        _("open weekdays"),
        max_length=7,
        default="0123456",
        blank=True,
        validators=[weekdays_validator],
        help_text=_("Digits Monday=0 … Sunday=6."),
    )
    requires_approval = models.BooleanField(_("requires approval"), default=False)
    requires_qualification = models.BooleanField(_("requires qualification"), default=False)
    hourly_rate = models.PositiveBigIntegerField(
        _("hourly rate (KRW)"),
        default=0,
        help_text=_("Won per unit-hour (per device-hour for pools)."),
    )
    no_show_grace_minutes = models.PositiveIntegerField(_("no-show grace (minutes)"), default=15)
    cancel_free_minutes = models.PositiveIntegerField(
        _("free cancellation until (minutes before start)"),
        default=60,
        help_text=_("A cancellation later than this is billed as booked."),
    )

    class Meta:
        abstract = True

    def open_days(self) -> frozenset[int]:
        return frozenset(int(c) for c in self.open_weekdays)

    def clean(self) -> None:
        errors: dict[str, object] = {}
        if self.min_minutes < self.slot_minutes or self.min_minutes % self.slot_minutes:
            errors["min_minutes"] = _("Make the minimum a multiple of the slot, at least one slot.")
        if self.max_minutes < self.min_minutes or self.max_minutes % self.slot_minutes:
            errors["max_minutes"] = _(
                "Make the maximum a multiple of the slot, at least the minimum."
            )
        if (self.opens_at is None) != (self.closes_at is None):
            errors["closes_at"] = _(
                "Give both opening and closing times, or neither for around the clock."
            )
        elif (
            self.opens_at is not None
            and self.closes_at is not None
            and self.opens_at >= self.closes_at
        ):
            errors["closes_at"] = _("Closing time must be after opening time.")
        if errors:
            raise ValidationError(errors)


def _policy_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(slot_minutes__gte=1)
            & Q(min_minutes__gte=models.F("slot_minutes"))
            & Q(max_minutes__gte=models.F("min_minutes")),
            name=f"{prefix}_policy_durations",
            violation_error_message=_("Durations must satisfy slot ≤ minimum ≤ maximum."),
        ),
        models.CheckConstraint(
            condition=(Q(opens_at__isnull=True) & Q(closes_at__isnull=True))
            | (Q(opens_at__isnull=False) & Q(closes_at__gt=models.F("opens_at"))),
            name=f"{prefix}_policy_hours",
            violation_error_message=_("Opening hours need both times, closing after opening."),
        ),
    ]


class ResourceCodeMixin(models.Model):
    """Codes are unique across equipment types and pools (one `resource=` namespace)."""

    class Meta:
        abstract = True

    def clean_fields(self, exclude=None):
        super().clean_fields(exclude=exclude)
        others = [EquipmentType, AcceleratorPool]
        for model in others:
            if model is type(self):
                continue
            if model.objects.filter(code__iexact=self.code).exists():
                raise ValidationError(
                    {
                        "code": _(
                            "This code is already used by another resource: choose another code."
                        )
                    }
                )


class EquipmentType(ResourceCodeMixin, BookingPolicy):
    """One of the 77 kinds of demonstration equipment; what a company books."""

    code = models.CharField(_("code"), max_length=40, unique=True, validators=[code_validator])
    name = models.CharField(_("name (Korean)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200)
    center = models.ForeignKey(Center, on_delete=models.PROTECT, related_name="equipment_types")
    field = models.CharField(_("field"), max_length=20, choices=Field.choices)
    phase = models.PositiveSmallIntegerField(_("phase"), choices=Phase.choices, default=Phase.ONE)
    category = models.CharField(_("category"), max_length=100, blank=True)
    description = models.TextField(_("description"), blank=True)
    specs = models.JSONField(_("specifications"), default=dict, blank=True)
    operating_mode = models.CharField(
        _("operating mode"),
        max_length=20,
        choices=OperatingMode.choices,
        default=OperatingMode.DIRECT,
    )
    placeholder = models.BooleanField(
        _("placeholder"),
        default=False,
        help_text=_(
            "True when this entry is invented to fill the catalogue, not from a public source."
        ),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("equipment type")
        verbose_name_plural = _("equipment types")
        constraints = [
            *_policy_constraints("equipment_equipmenttype"),
            models.CheckConstraint(
                condition=Q(field__in=[Field.HEALTHCARE, Field.AUTOMOTIVE, Field.ENERGY]),
                name="equipment_equipmenttype_field_demo",
                violation_error_message=_(
                    "Equipment types belong to healthcare, automotive or energy."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    kind = "equipment"


class EquipmentUnit(models.Model):
    """One physical item of an equipment type, with its asset tag."""

    equipment_type = models.ForeignKey(
        EquipmentType, on_delete=models.PROTECT, related_name="units"
    )
    code = models.CharField(
        _("code / asset tag"), max_length=60, unique=True, validators=[code_validator]
    )
    serial = models.CharField(_("serial number"), max_length=100, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=UnitStatus.choices, default=UnitStatus.ACTIVE
    )
    location = models.CharField(_("location"), max_length=200, blank=True)
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("equipment unit")
        verbose_name_plural = _("equipment units")

    def __str__(self) -> str:
        return self.code


class AcceleratorPool(ResourceCodeMixin, BookingPolicy):
    """A set of identical accelerators (cards, or partitions of cards) on nodes."""

    code = models.CharField(_("code"), max_length=40, unique=True, validators=[code_validator])
    name = models.CharField(_("name (Korean)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200)
    center = models.ForeignKey(Center, on_delete=models.PROTECT, related_name="pools")
    vendor = models.CharField(_("vendor"), max_length=100)
    accelerator = models.CharField(_("accelerator model"), max_length=100)
    kind = models.CharField(_("kind"), max_length=10, choices=AcceleratorKind.choices)
    partition_kind = models.CharField(
        _("partitioning"), max_length=10, choices=PartitionKind.choices, default=PartitionKind.WHOLE
    )
    memory_gb = models.PositiveIntegerField(_("memory per device (GB)"), default=0)
    description = models.TextField(_("description"), blank=True)
    placeholder = models.BooleanField(
        _("placeholder"), default=False, help_text=_("True when the pool size is not published.")
    )
    idle_threshold_pct = models.PositiveSmallIntegerField(
        _("idle below (utilisation %)"), default=5, validators=[MaxValueValidator(100)]
    )
    idle_minutes = models.PositiveIntegerField(_("idle for (minutes) before flagging"), default=120)
    idle_grace_minutes = models.PositiveIntegerField(
        _("grace after flag (minutes) before reclaim"), default=60
    )
    contested_lead_days = models.PositiveIntegerField(
        _("contested: collect requests starting beyond (days)"),
        null=True,
        blank=True,
        help_text=_(
            "Empty: first come, first served. Set: requests for windows further ahead than this are "
            "collected in rounds and placed in fair-share order at each round's cutoff."
        ),
    )
    domestic = models.BooleanField(
        _("domestic accelerator"),
        default=False,
        help_text=_("A Korean-made NPU (FuriosaAI, Rebellions, SAPEON)."),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("accelerator pool")
        verbose_name_plural = _("accelerator pools")
        constraints = [*_policy_constraints("equipment_acceleratorpool")]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Node(models.Model):
    """A server in a pool that carries devices."""

    pool = models.ForeignKey(AcceleratorPool, on_delete=models.PROTECT, related_name="nodes")
    hostname = models.CharField(_("host name"), max_length=120, unique=True)
    status = models.CharField(
        _("status"), max_length=20, choices=NodeStatus.choices, default=NodeStatus.ACTIVE
    )
    agent_key_hash = models.CharField(
        _("agent key (hash)"), max_length=128, blank=True, editable=False
    )

    class Meta:
        ordering = ["pool", "hostname"]
        verbose_name = _("node")
        verbose_name_plural = _("nodes")

    def __str__(self) -> str:
        return self.hostname


class Device(models.Model):
    """One bookable accelerator: a whole card, or a partition (MIG, RNGD instance) of one."""

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="devices")
    index = models.PositiveSmallIntegerField(_("index on node"))
    uuid = models.UUIDField(_("UUID"), default=uuid.uuid4, unique=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="partitions",
        help_text=_("The physical card this partition belongs to."),
    )
    profile = models.CharField(_("partition profile"), max_length=40, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=DeviceStatus.choices, default=DeviceStatus.ACTIVE
    )

    class Meta:
        ordering = ["node", "index"]
        verbose_name = _("device")
        verbose_name_plural = _("devices")
        constraints = [
            models.UniqueConstraint(
                fields=["node", "index"],
                name="equipment_device_node_index_unique",
                violation_error_message=_("A node has one device per index."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node.hostname}/{self.index}"


class MaintenanceWindow(models.Model):
    """A time when a unit, node, whole type or whole pool cannot be booked."""

    equipment_type = models.ForeignKey(
        EquipmentType,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
    )
    unit = models.ForeignKey(
        EquipmentUnit,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
    )
    pool = models.ForeignKey(
        AcceleratorPool,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
    )
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.CASCADE, related_name="maintenance_windows"
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    reason = models.CharField(_("reason"), max_length=300)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start"]
        verbose_name = _("maintenance window")
        verbose_name_plural = _("maintenance windows")
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")),
                name="equipment_maintenancewindow_end_after_start",
                violation_error_message=_("The end must be after the start."),
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        equipment_type__isnull=False,
                        unit__isnull=True,
                        pool__isnull=True,
                        node__isnull=True,
                    )
                    | Q(
                        equipment_type__isnull=True,
                        unit__isnull=False,
                        pool__isnull=True,
                        node__isnull=True,
                    )
                    | Q(
                        equipment_type__isnull=True,
                        unit__isnull=True,
                        pool__isnull=False,
                        node__isnull=True,
                    )
                    | Q(
                        equipment_type__isnull=True,
                        unit__isnull=True,
                        pool__isnull=True,
                        node__isnull=False,
                    )
                ),
                name="equipment_maintenancewindow_one_target",
                violation_error_message=_(
                    "Give exactly one of equipment type, unit, pool or node."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"

    @property
    def target(self) -> models.Model:
        return self.equipment_type or self.unit or self.pool or self.node  # type: ignore[return-value]

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start
