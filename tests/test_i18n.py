"""Translations: Korean first (the default language), English on request.

Model, field and choice msgids are English with Korean catalogue entries; the front-page
template's msgids are Korean with English catalogue entries. The compiled .mo files are
committed, so a machine without gettext still serves both languages.
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils.translation import override

from booking.choices import BookingStatus
from booking.models import Booking, Organization, QuotaGrant
from equipment.models import AcceleratorPool, EquipmentType, EquipmentUnit, MaintenanceWindow
from tests.factories import make_pool

LOCALE_DIR = Path(django_settings.BASE_DIR) / "locale"
HANGUL = re.compile(r"[\uac00-\ud7a3]")
LATIN = re.compile(r"[A-Za-z]")


def _unquote(s: str) -> str:
    return s.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def _po_entries(path: Path) -> dict[str, str]:
    """msgid → msgstr (the first form for plurals) of a .po file; fuzzy entries left out.

    An entry with a context (`msgctxt`) is keyed as gettext stores it: "context\x04msgid".
    """
    entries: dict[str, str] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        if "#, fuzzy" in block:
            continue
        parts: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            m = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr|msgstr\[\d+\]) "(.*)"$', line)
            if m:
                key = m.group(1)
                parts[key] = [m.group(2)]
            elif line.startswith('"') and key:
                parts[key].append(line[1:-1])
        msgid = _unquote("".join(parts.get("msgid", [])))
        if msgid and "msgctxt" in parts:
            msgid = _unquote("".join(parts["msgctxt"])) + "\x04" + msgid
        if msgid:
            entries[msgid] = _unquote("".join(parts.get("msgstr") or parts.get("msgstr[0]") or []))
    return entries


def test_it_names_key_models_in_korean():
    with override("ko"):
        assert Booking._meta.verbose_name == "예약"
        assert Organization._meta.verbose_name == "기관"
        assert EquipmentType._meta.verbose_name == "장비 종류"
        assert EquipmentUnit._meta.verbose_name == "장비(개별)"
        assert AcceleratorPool._meta.verbose_name == "가속기 풀"
        assert QuotaGrant._meta.verbose_name == "사용량 할당"
        assert MaintenanceWindow._meta.verbose_name == "점검 일정"


def test_it_labels_booking_statuses_in_korean_only():
    with override("ko"):
        assert BookingStatus.PENDING.label == "배정 중"
        assert BookingStatus.NO_SHOW.label == "미사용(노쇼)"
        for status in BookingStatus:
            assert HANGUL.search(str(status.label)), status
            assert not LATIN.search(str(status.label)), status.label


def test_it_labels_booking_statuses_in_english_only():
    with override("en"):
        assert BookingStatus.PENDING.label == "pending"
        assert BookingStatus.AWAITING_APPROVAL.label == "awaiting approval"
        for status in BookingStatus:
            assert not HANGUL.search(str(status.label)), status.label


def test_it_serves_the_front_page_in_korean_by_default(client, settings, db):
    settings.LANGUAGE_CODE = "ko"
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="ko">' in html
    assert "<h1>공유 AI 인프라 예약</h1>" in html
    assert "실증장비 0종" in html
    assert "가속기 풀 0개" in html
    assert '<label for="id_q">이름이나 코드로 검색</label>' in html


def test_it_serves_the_front_page_in_english_when_asked(client, db):
    make_pool(nodes=1, per_node=4, name="H100 GPU 풀", name_en="H100 GPU pool")
    # LocaleMiddleware picks the language per request (cookie, then Accept-Language), so the
    # request says "en" as a browser would; override() covers the code outside the request.
    with override("en"):
        response = client.get("/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="en">' in html
    assert "<h1>Shared AI infrastructure booking</h1>" in html
    assert '<h2 id="pools-heading">Accelerator pools</h2>' in html
    assert "H100 GPU pool" in html and "H100 GPU 풀" not in html
    assert "0 kinds of demonstration equipment · 1 accelerator pool" in html
    assert "Search by name or code" in html
    assert "공유 AI 인프라 예약" not in html


def test_it_switches_the_front_page_to_english_from_the_language_selector(client, db):
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert response.status_code == 302
    html = client.get("/").content.decode()
    assert "<h1>Shared AI infrastructure booking</h1>" in html
    assert '<html lang="en">' in html  # the choice sticks: the session remembers it
    assert '<option value="en" selected>English</option>' in html


@pytest.mark.parametrize("language", ["ko", "en"])
def test_it_ships_compiled_catalogues_that_match_the_po_files(language):
    po = LOCALE_DIR / language / "LC_MESSAGES" / "django.po"
    mo = LOCALE_DIR / language / "LC_MESSAGES" / "django.mo"
    assert po.is_file()
    assert mo.is_file(), f"run manage.py compilemessages: {mo} is missing"
    with mo.open("rb") as fh:
        catalogue = gettext.GNUTranslations(fh)
    translated = {msgid: msgstr for msgid, msgstr in _po_entries(po).items() if msgstr}
    assert translated
    stale = [
        msgid
        for msgid, msgstr in translated.items()
        if msgstr not in (catalogue.gettext(msgid), catalogue.ngettext(msgid, msgid, 1))
    ]
    assert not stale, f"{mo} is older than {po}: run manage.py compilemessages ({stale[:3]})"


def test_it_translates_every_korean_catalogue_entry():
    entries = _po_entries(LOCALE_DIR / "ko" / "LC_MESSAGES" / "django.po")
    untranslated = [msgid for msgid, msgstr in entries.items() if not msgstr]
    assert not untranslated
    # Korean-only wording: no English left over in the Korean msgstrs, apart from names and units.
    allowed = re.compile(
        r"API|AI|UUID|GPU|NPU|NVIDIA|MIG|FuriosaAI|RNGD|Warboy|PE|ID|MiB|GB|W|J|%\(\w+\)[sd]|%s"
        r"|Slurm|scontrol|SLURM_CONF|slurm\.conf|MAINT|PATH|ClusterName"
    )
    leftovers = {
        msgid: msgstr for msgid, msgstr in entries.items() if LATIN.search(allowed.sub("", msgstr))
    }
    assert not leftovers
