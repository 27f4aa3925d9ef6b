"""Checking one YAML entry at a time: keys, value types, the models' own validators.

Every problem is recorded with where it is ("<file>: types[3] (HC-PSG): max_minutes: …") and
checking goes on, so one run lists every problem; `SeedError` carries them all.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import translation

# What YAML type each key must have. Keys in none of these are text.
INT_KEYS = set(
    "slot_minutes min_minutes max_minutes min_lead_minutes max_lead_days buffer_minutes "
    "hourly_rate no_show_grace_minutes cancel_free_minutes phase units_count memory_gb "
    "idle_threshold_pct idle_minutes idle_grace_minutes cards count devices_per_node "
    "contested_lead_days".split()
)
BOOL_KEYS = {"requires_approval", "requires_qualification", "placeholder", "domestic"}
TIME_KEYS = {"opens_at", "closes_at"}
DICT_KEYS = {"specs"}
LIST_KEYS = {"units", "nodes"}
TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SeedError(Exception):
    """The catalogue files are wrong. `problems` holds one line per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = (
            f"The seed files have {count} problem{'s' if count != 1 else ''}; nothing was written:"
        )
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


# The C parser (libyaml) when PyYAML was built with it: about five times faster.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(f"{path}{at}: not valid YAML: {problem}")
    except OSError as exc:
        problems.append(f"{path}: cannot be read ({exc})")
    return None


class Entry:
    """Collects the problems of one entry, each prefixed with where it is."""

    def __init__(self, where: str, problems: list[str], parent: Entry | None = None) -> None:
        self.where = where
        self.name = where
        self._problems = problems
        self._parent = parent
        self._defaults: Defaults | None = None
        self._inherited: set[str] = set()
        self.ok = True

    def child(self, suffix: str) -> Entry:
        """An entry inside this one (a unit of a type): its problems make this one fail too."""
        return Entry(f"{self.where}: {suffix}", self._problems, parent=self)

    def inherits(self, defaults: Defaults, keys: Iterable[str], *, name: str) -> None:
        """Problems with these keys' values are the defaults' to report (once, not per entry)."""
        self._defaults, self._inherited, self.name = defaults, set(keys), name

    def problem(self, key: str | None, message: str) -> None:
        self.ok = False
        if self._parent is not None:
            self._parent.ok = False
        if self._defaults is not None and key in self._inherited:
            self._defaults.inherited_problem(key, message, by=self.name)
            return
        self._problems.append(
            f"{self.where}: {key}: {message}" if key else f"{self.where}: {message}"
        )


class Defaults(Entry):
    """A file's `defaults:` block. A bad default is reported once, naming who inherits it."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(where, problems)
        self._by_problem: dict[tuple[str, str], list[str]] = {}

    def inherited_problem(self, key: str, message: str, *, by: str) -> None:
        self._by_problem.setdefault((key, message), []).append(by)

    def report_inherited(self) -> None:
        for (key, message), names in self._by_problem.items():
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            self.problem(key, f"{message} (inherited by {', '.join(names[:5])}{more})")
        self._by_problem.clear()


def check_keys(entry: Entry, data: dict, allowed: set[str], required: Iterable[str] = ()) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            entry.problem(str(key), f"unknown field{hint}")
    for key in required:
        if key not in data or data[key] is None or data[key] == "":
            entry.problem(key, "missing: this field is required")


def coerce(entry: Entry, data: dict) -> dict[str, Any]:
    """Check each value's YAML type and turn "HH:MM" strings into times."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                entry.problem(key, f"must be a whole number, not {value!r}")
                continue
        elif key in BOOL_KEYS:
            if not isinstance(value, bool):
                entry.problem(key, f"must be true or false, not {value!r}")
                continue
        elif key in TIME_KEYS:
            if value is None:
                pass
            elif isinstance(value, int) and not isinstance(value, bool):
                entry.problem(
                    key,
                    f'write the time in quotes, e.g. "18:00" (YAML read it as the number {value})',
                )
                continue
            elif isinstance(value, str) and (m := TIME_RE.match(value)):
                value = dt.time(int(m.group(1)), int(m.group(2)))
            else:
                entry.problem(
                    key,
                    f'must be a time "HH:MM" in quotes, or null for around the clock, not {value!r}',
                )
                continue
        elif key in DICT_KEYS:
            if not isinstance(value, dict):
                entry.problem(key, "must be a mapping (key: value)")
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                entry.problem(
                    key, f"must hold only text, numbers, lists and mappings (quote dates): {exc}"
                )
                continue
        elif key in LIST_KEYS:
            if not isinstance(value, list) or not value:
                entry.problem(key, "must be a non-empty list")
                continue
        elif value is not None and not isinstance(value, str):
            # open_weekdays: 01234 unquoted is an octal number to YAML.
            entry.problem(key, f'must be text; write it in quotes, e.g. "{value}"')
            continue
        out[key] = value
    return out


def check_model(entry: Entry, instance: models.Model, exclude: list[str]) -> None:
    """Run the model's field validators (not its database checks) and, if they pass, clean()."""
    with translation.override("en"):
        try:
            # models.Model.clean_fields, not the instance's: ResourceCodeMixin's override
            # queries the database, and the cross-resource check is done on the files.
            models.Model.clean_fields(instance, exclude=exclude)
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                for message in messages:
                    entry.problem(key, message)
            return
        try:
            instance.clean()
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                for message in messages:
                    entry.problem(key, message)


def check_policy_sense(entry: Entry, values: dict[str, Any]) -> None:
    """Rules the model does not enforce but that would make a resource unbookable."""
    if values.get("open_weekdays") == "":
        entry.problem("open_weekdays", "no open weekday: the resource could never be booked")
    opens, closes = values.get("opens_at"), values.get("closes_at")
    if opens is not None and closes is not None and opens < closes:
        day_minutes = (closes.hour * 60 + closes.minute) - (opens.hour * 60 + opens.minute)
        if values.get("min_minutes", 0) > day_minutes:
            entry.problem(
                "min_minutes",
                f"{values['min_minutes']} minutes do not fit between opens_at and closes_at "
                f"({day_minutes} minutes): open around the clock (null) or shorten the minimum",
            )
    lead, ahead = values.get("min_lead_minutes"), values.get("max_lead_days")
    if isinstance(lead, int) and isinstance(ahead, int) and lead >= ahead * 1440:
        entry.problem(
            "min_lead_minutes", "must be shorter than max_lead_days, or nothing can be booked"
        )


def check_source(entry: Entry, values: dict[str, Any]) -> None:
    if "placeholder" not in values:
        entry.problem(
            "placeholder",
            "missing: say true for an invented entry, false for one from a public source",
        )
    elif values["placeholder"] is False and not values.get("source"):
        entry.problem(
            "source", "missing: an entry with placeholder: false must say where it comes from"
        )
