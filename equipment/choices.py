from django.db import models
from django.utils.translation import gettext_lazy as _


class Field(models.TextChoices):
    HEALTHCARE = "healthcare", _("healthcare")
    AUTOMOTIVE = "automotive", _("automotive")
    ENERGY = "energy", _("energy")
    COMPUTE = "compute", _("compute")


class Phase(models.IntegerChoices):
    ONE = 1, _("phase 1")
    TWO = 2, _("phase 2")


class OperatingMode(models.TextChoices):
    """ZEUS's two ways of using equipment."""

    DIRECT = "direct", _("direct use (직접사용)")
    ANALYSIS = "analysis", _("test/analysis by staff (시험·분석의뢰)")


class UnitStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    MAINTENANCE = "maintenance", _("maintenance")
    RETIRED = "retired", _("retired")


class AcceleratorKind(models.TextChoices):
    GPU = "gpu", _("GPU")
    NPU = "npu", _("NPU")


class PartitionKind(models.TextChoices):
    """How a pool's devices relate to physical cards."""

    WHOLE = "whole", _("whole cards")
    MIG = "mig", _("NVIDIA MIG instances")
    RNGD = "rngd", _("FuriosaAI RNGD instances")
    PE = "pe", _("Warboy processing elements")


class NodeStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    DRAINING = "draining", _("draining")
    MAINTENANCE = "maintenance", _("maintenance")
    RETIRED = "retired", _("retired")


class DeviceStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    FAULTY = "faulty", _("faulty")
    RETIRED = "retired", _("retired")
