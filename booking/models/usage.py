"""What was really used: telemetry from node agents, rollups per booking and per day."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from booking.models.core import Booking, Organization
from equipment.models import AcceleratorPool, Device, Node


class TelemetrySample(models.Model):
    """One reading of one device by a node agent (NVML for NVIDIA, vendor tools for NPUs).

    (device, at) is unique, so an agent that re-sends a batch after a lost reply adds nothing.
    `booking` is the booking that held the device at `at`, attributed on ingest.
    """

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="samples")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="samples")
    booking = models.ForeignKey(
        Booking, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples"
    )
    at = models.DateTimeField(_("sampled at"))
    utilization_pct = models.FloatField(_("utilisation (%)"))
    memory_used_mb = models.FloatField(_("memory used (MiB)"), null=True, blank=True)
    power_w = models.FloatField(_("power (W)"), null=True, blank=True)
    energy_j = models.FloatField(
        _("energy counter (J)"),
        null=True,
        blank=True,
        help_text=_("The device's cumulative energy counter, when it has one."),
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device", "at"]
        verbose_name = _("telemetry sample")
        verbose_name_plural = _("telemetry samples")
        indexes = [models.Index(fields=["booking", "at"], name="booking_sample_booking_at_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["device", "at"], name="booking_telemetrysample_device_at_unique"
            ),
            models.CheckConstraint(
                condition=Q(utilization_pct__gte=0) & Q(utilization_pct__lte=100),
                name="booking_telemetrysample_utilization_range",
                violation_error_message=_("Utilisation is a percentage between 0 and 100."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device} @ {self.at:%Y-%m-%d %H:%M:%S} {self.utilization_pct:.0f}%"


class BookingUsage(models.Model):
    """A booking's usage rollup, recomputed idempotently by a beat task."""

    booking = models.OneToOneField(Booking, on_delete=models.CASCADE, related_name="usage")
    booked_unit_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    used_unit_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    mean_utilization_pct = models.FloatField(null=True, blank=True)
    energy_kwh = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    charge_krw = models.BigIntegerField(default=0)
    samples = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("booking usage")
        verbose_name_plural = _("booking usage")

    def __str__(self) -> str:
        return f"usage of booking #{self.booking_id}"


class DailyUsage(models.Model):
    """Organisation × resource × day (facility time): the table reports are read from."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="daily_usage"
    )
    resource_code = models.CharField(max_length=40)
    resource_kind = models.CharField(max_length=10)  # equipment | pool
    center_code = models.CharField(max_length=40)
    day = models.DateField()
    bookings = models.PositiveIntegerField(default=0)
    booked_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    used_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    unit_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    cancelled = models.PositiveIntegerField(default=0)
    no_shows = models.PositiveIntegerField(default=0)
    charge_krw = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day", "organization", "resource_code"]
        verbose_name = _("daily usage")
        verbose_name_plural = _("daily usage")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource_code", "day"],
                name="booking_dailyusage_org_resource_day_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["day", "resource_code"], name="booking_dailyusage_day_res_idx")
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.resource_code} {self.day}"


class ContestedRound(models.Model):
    """Requests for a contested pool's windows are collected until `cutoff_at`, then placed in
    fair-share order: within-quota before over-quota, lower recent use relative to the grant
    first, then submission time."""

    pool = models.ForeignKey(AcceleratorPool, on_delete=models.PROTECT, related_name="rounds")
    window_start = models.DateTimeField(_("bookings starting from"))
    window_end = models.DateTimeField(_("bookings starting before"))
    cutoff_at = models.DateTimeField(_("requests collected until"))
    allocated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cutoff_at"]
        verbose_name = _("contested round")
        verbose_name_plural = _("contested rounds")
        constraints = [
            models.CheckConstraint(
                condition=Q(window_end__gt=models.F("window_start")),
                name="booking_contestedround_window_order",
                violation_error_message=_("The window must end after it starts."),
            ),
            models.CheckConstraint(
                condition=Q(cutoff_at__lte=models.F("window_start")),
                name="booking_contestedround_cutoff_before_window",
                violation_error_message=_("The cutoff must come before the window opens."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pool.code} round until {self.cutoff_at:%Y-%m-%d %H:%M}"
