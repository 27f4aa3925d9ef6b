from django.db import models
from django.utils.translation import gettext_lazy as _


class OrgCategory(models.TextChoices):
    SME = "sme", _("SME (중소기업)")
    LARGE = "large", _("large company (대기업)")
    STARTUP = "startup", _("start-up (스타트업)")
    UNIVERSITY = "university", _("university (대학)")
    INSTITUTE = "institute", _("research institute (연구기관)")
    PUBLIC = "public", _("public body (공공기관)")


class Region(models.TextChoices):
    """The 17 first-level divisions (시·도)."""

    SEOUL = "seoul", _("서울")
    BUSAN = "busan", _("부산")
    DAEGU = "daegu", _("대구")
    INCHEON = "incheon", _("인천")
    GWANGJU = "gwangju", _("광주")
    DAEJEON = "daejeon", _("대전")
    ULSAN = "ulsan", _("울산")
    SEJONG = "sejong", _("세종")
    GYEONGGI = "gyeonggi", _("경기")
    GANGWON = "gangwon", _("강원")
    CHUNGBUK = "chungbuk", _("충북")
    CHUNGNAM = "chungnam", _("충남")
    JEONBUK = "jeonbuk", _("전북")
    JEONNAM = "jeonnam", _("전남")
    GYEONGBUK = "gyeongbuk", _("경북")
    GYEONGNAM = "gyeongnam", _("경남")
    JEJU = "jeju", _("제주")


class Role(models.TextChoices):
    MANAGER = "manager", _("manager")
    MEMBER = "member", _("member")


class BookingStatus(models.TextChoices):
    PENDING = "pending", _("pending (배정 중)")
    AWAITING_APPROVAL = "awaiting_approval", _("awaiting approval (승인 대기)")
    CONFIRMED = "confirmed", _("confirmed (확정)")
    REJECTED = "rejected", _("rejected (거절)")
    ACTIVE = "active", _("in use (사용 중)")
    COMPLETED = "completed", _("completed (완료)")
    CANCELLED = "cancelled", _("cancelled (취소)")
    NO_SHOW = "no_show", _("no-show (미사용)")


# Statuses in which a booking's allocation rows hold their units or devices.
HOLDING_STATUSES = (
    BookingStatus.AWAITING_APPROVAL,
    BookingStatus.CONFIRMED,
    BookingStatus.ACTIVE,
    BookingStatus.COMPLETED,
)
# Statuses from which a booking may still change.
OPEN_STATUSES = (
    BookingStatus.PENDING,
    BookingStatus.AWAITING_APPROVAL,
    BookingStatus.CONFIRMED,
    BookingStatus.ACTIVE,
)


class Enforcement(models.TextChoices):
    HARD = "hard", _("hard (refuse past the limit)")
    SOFT = "soft", _("soft (allow, flag over quota)")


class LedgerKind(models.TextChoices):
    HOLD = "hold", _("hold")
    RELEASE = "release", _("release")
    CONSUME = "consume", _("consume")
    ADJUST = "adjust", _("adjust")
