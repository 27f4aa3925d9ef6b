"""Models of integrations.slurm: which pool a Slurm cluster backs and how to reach it, how our
nodes and organisations are named in Slurm, and the sync's status per pool (shown to operators)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import pgettext_lazy

from booking.models import Organization
from equipment.models import AcceleratorPool, Node

slurm_name_validator = RegexValidator(
    r"^[A-Za-z0-9_.@-]{1,64}$",
    pgettext_lazy("slurm", "Use a Slurm name: letters, digits, _ . @ - (at most 64 characters)."),
)
slurm_names_validator = RegexValidator(
    r"^([A-Za-z0-9_.@-]{1,64})(,[A-Za-z0-9_.@-]{1,64})*$",
    pgettext_lazy("slurm", "Use Slurm names separated by commas, without spaces (e.g. alice,bob)."),
)
prefix_validator = RegexValidator(
    r"^[A-Za-z0-9_.-]{1,20}$",
    pgettext_lazy("slurm", "Use letters, digits, _ . - (at most 20 characters), e.g. tb-."),
)


def split_names(value: str) -> list[str]:
    return [name for name in (value or "").split(",") if name]


class SlurmCluster(models.Model):
    """A pool whose bookings are enforced as advance reservations on a Slurm cluster."""

    pool = models.OneToOneField(
        AcceleratorPool,
        on_delete=models.CASCADE,
        related_name="slurm_cluster",
        verbose_name=pgettext_lazy("slurm", "pool"),
    )
    enabled = models.BooleanField(
        pgettext_lazy("slurm", "enabled"),
        default=True,
        help_text=pgettext_lazy("slurm", "Off: nothing is sent to Slurm for this pool."),
    )
    cluster_name = models.CharField(
        pgettext_lazy("slurm", "Slurm cluster name"),
        max_length=64,
        blank=True,
        help_text=pgettext_lazy("slurm", "For people (ClusterName)."),
    )
    scontrol_path = models.CharField(
        pgettext_lazy("slurm", "scontrol command"),
        max_length=300,
        default="scontrol",
        help_text=pgettext_lazy(
            "slurm", "Path of scontrol on the worker machines, or a name on PATH."
        ),
    )
    slurm_conf = models.CharField(
        pgettext_lazy("slurm", "SLURM_CONF"),
        max_length=300,
        blank=True,
        help_text=pgettext_lazy(
            "slurm", "slurm.conf to use on the worker machines; empty: Slurm's default."
        ),
    )
    partition = models.CharField(
        pgettext_lazy("slurm", "partition"),
        max_length=64,
        blank=True,
        validators=[slurm_name_validator],
        help_text=pgettext_lazy(
            "slurm", "Reservations are made in this partition; empty: none named."
        ),
    )
    reservation_prefix = models.CharField(
        pgettext_lazy("slurm", "reservation name prefix"),
        max_length=20,
        default="tb-",
        validators=[prefix_validator],
        help_text=pgettext_lazy(
            "slurm",
            "Reservations named with it are ours (tb-<booking>, tb-maint-<window>); any other is "
            "left alone. Give each testbed installation sharing a cluster its own prefix.",
        ),
    )
    maintenance_users = models.CharField(
        pgettext_lazy("slurm", "maintenance users"),
        max_length=300,
        default="root",
        validators=[slurm_names_validator],
        help_text=pgettext_lazy(
            "slurm", "Slurm users allowed in MAINT reservations (operators), comma-separated."
        ),
    )
    timeout_seconds = models.PositiveSmallIntegerField(
        pgettext_lazy("slurm", "command timeout (s)"), default=20
    )
    # The sync's status (written by the reconciler only).
    last_attempt_at = models.DateTimeField(
        pgettext_lazy("slurm", "last attempt"), null=True, blank=True
    )
    last_success_at = models.DateTimeField(
        pgettext_lazy("slurm", "last successful sync"), null=True, blank=True
    )
    last_error = models.TextField(pgettext_lazy("slurm", "last error"), blank=True)
    last_error_at = models.DateTimeField(
        pgettext_lazy("slurm", "last error at"), null=True, blank=True
    )
    pending_changes = models.PositiveIntegerField(
        pgettext_lazy("slurm", "pending changes"),
        default=0,
        help_text=pgettext_lazy("slurm", "Changes not yet applied on Slurm (0 when in step)."),
    )
    conflicts = models.JSONField(
        pgettext_lazy("slurm", "foreign reservations over bookings"), default=list, blank=True
    )

    class Meta:
        verbose_name = pgettext_lazy("slurm", "Slurm cluster")
        verbose_name_plural = pgettext_lazy("slurm", "Slurm clusters")
        ordering = ["pool__code"]

    def __str__(self) -> str:
        return f"{self.pool.code} → {self.cluster_name or 'Slurm'}"

    @property
    def in_step(self) -> bool:
        return self.pending_changes == 0 and not self.last_error


class SlurmNode(models.Model):
    """Our node's name in Slurm, where it differs from its host name."""

    node = models.OneToOneField(
        Node,
        on_delete=models.CASCADE,
        related_name="slurm_node",
        verbose_name=pgettext_lazy("slurm", "node"),
    )
    slurm_name = models.CharField(
        pgettext_lazy("slurm", "Slurm node name"), max_length=64, validators=[slurm_name_validator]
    )

    class Meta:
        verbose_name = pgettext_lazy("slurm", "Slurm node name")
        verbose_name_plural = pgettext_lazy("slurm", "Slurm node names")
        ordering = ["node__hostname"]

    def __str__(self) -> str:
        return f"{self.node.hostname} → {self.slurm_name}"


class SlurmAccount(models.Model):
    """An organisation's Slurm account and users (the reservation's Accounts= and Users=).

    Without one, the account is the organisation's slug and no user is named."""

    organization = models.OneToOneField(
        Organization,
        on_delete=models.CASCADE,
        related_name="slurm_account",
        verbose_name=pgettext_lazy("slurm", "organisation"),
    )
    account = models.CharField(
        pgettext_lazy("slurm", "Slurm account"),
        max_length=64,
        blank=True,
        validators=[slurm_name_validator],
        help_text=pgettext_lazy("slurm", "Empty: no account named (then give users)."),
    )
    users = models.CharField(
        pgettext_lazy("slurm", "Slurm users"),
        max_length=1000,
        blank=True,
        validators=[slurm_names_validator],
        help_text=pgettext_lazy(
            "slurm",
            "Comma-separated login names on the cluster. With an account too, a job must match both.",
        ),
    )

    class Meta:
        verbose_name = pgettext_lazy("slurm", "Slurm account")
        verbose_name_plural = pgettext_lazy("slurm", "Slurm accounts")
        ordering = ["organization__slug"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(account="", users=""),
                name="slurm_slurmaccount_account_or_users",
                violation_error_message=pgettext_lazy(
                    "slurm", "Give a Slurm account, users, or both."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug} → {self.account or self.users}"
