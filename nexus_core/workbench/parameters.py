"""Notebook parameters: the inputs a notebook declares, and the values its cells are bound to.

A parameter is declared as ``name: type = default`` (the form of a notebook file's ``params``
block) and used in SQL as ``$name``, a DuckDB bound parameter — its value never becomes SQL text,
so ``' OR 1=1 --`` typed into a text box is compared as the string it is.

Every value has one text form, the same in a file's default, a page address (``links``) and
``nexus notebooks run --param NAME=VALUE``:

``text``        any text                          ``int`` / ``float``   a number
``date``        ``YYYY-MM-DD``, ``today`` or ``today-N`` (N days before today, UTC)
``date_range``  ``YYYY-MM-DD..YYYY-MM-DD`` or ``last N days`` (the N days ending today); bound
                as two values, ``$<name>_start`` (the first day's midnight) and ``$<name>_end``
                (the midnight after the last day), naive UTC timestamps like ``events.ts``: a range
                is both days inclusive, ``ts >= $period_start AND ts < $period_end``, the meaning
                every date range in the app has (``nexus_core.ui.dates``)
``persona``, ``model``, ``user``   a persona name, a model name, a username: text, picked from a
                list on the page

An empty value (no default, nothing chosen, or "any" in a picker) is bound as NULL, so a cell can
say ``($persona IS NULL OR persona = $persona)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal, cast

from nexus_core.errors import ValidationError

ParameterType = Literal["text", "int", "float", "date", "date_range", "persona", "model", "user"]
PARAMETER_TYPES: Final[tuple[ParameterType, ...]] = (
    "text",
    "int",
    "float",
    "date",
    "date_range",
    "persona",
    "model",
    "user",
)
PICKED_TYPES: Final[frozenset[str]] = frozenset({"persona", "model", "user"})
RANGE_SUFFIXES: Final = ("_start", "_end")
RANGE_SEPARATOR: Final = ".."
MAX_PARAMETERS: Final = 20
MAX_NAME_CHARS: Final = 40
MAX_VALUE_CHARS: Final = 500
NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Parts that never overlap, so it runs in linear time; the default is stripped afterwards.
DECLARATION: Final = re.compile(r"\s*([^:=\s]+)\s*:\s*([^=\s]+)\s*(?:=(.*))?\s*")
TODAY: Final = re.compile(r"(?i)^today\s*(?:-\s*(\d+))?$")
LAST_DAYS: Final = re.compile(r"(?i)^last\s+(\d+)\s+days?$")

Value = str | int | float | date | tuple[date, date] | None
Bound = str | int | float | date | datetime | None


@dataclass(frozen=True)
class Parameter:
    """One declared input of a notebook: its name (``$name`` in SQL), type and default text."""

    name: str
    type: ParameterType = "text"
    default: str = ""

    @property
    def bound_names(self) -> tuple[str, ...]:
        """The ``$names`` a cell may use for it (two for a date range)."""
        if self.type == "date_range":
            return tuple(self.name + suffix for suffix in RANGE_SUFFIXES)
        return (self.name,)

    def declaration(self) -> str:
        """The parameter as a line of a ``params`` block: ``name: type = default``."""
        line = f"{self.name}: {self.type}"
        return f"{line} = {self.default}" if self.default else line

    def to_json(self) -> dict[str, str]:
        """The parameter as a JSON-ready dict."""
        return {"name": self.name, "type": self.type, "default": self.default}

    @classmethod
    def from_json(cls, data: object) -> Parameter:
        """A parameter from its JSON form; ``ValidationError`` when malformed."""
        if not isinstance(data, dict):
            raise ValidationError("A parameter must be an object.")
        fields = (data.get("name"), data.get("type", "text"), data.get("default") or "")
        if not all(isinstance(value, str) for value in fields):
            raise ValidationError("A parameter's name, type and default are text.")
        return parameter(*cast(tuple[str, str, str], fields))


def parameter(name: str, kind: str = "text", default: str = "") -> Parameter:
    """A checked parameter: a name SQL can use, a known type, a default of that type."""
    name, default = name.strip(), default.strip()
    if len(name) > MAX_NAME_CHARS or not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"A parameter name is a letter or _ followed by letters, digits or _ (at most "
            f"{MAX_NAME_CHARS}); {name!r} is not."
        )
    if kind not in PARAMETER_TYPES:
        raise ValidationError(
            f"Parameter {name!r} has an unknown type {kind!r}; use one of "
            f"{', '.join(PARAMETER_TYPES)}."
        )
    declared = Parameter(name, cast(ParameterType, kind), default)
    parse_value(declared, default, today=date(2000, 1, 1))  # refuses a default of another type
    return declared


def validate_parameters(parameters: list[Parameter]) -> list[Parameter]:
    """The parameters as stored; refuses too many and two that bind the same ``$name``."""
    if len(parameters) > MAX_PARAMETERS:
        raise ValidationError(f"A notebook has at most {MAX_PARAMETERS} parameters.")
    checked = [parameter(p.name, p.type, p.default) for p in parameters]
    seen: set[str] = set()
    for declared in checked:
        for bound in declared.bound_names:
            if bound.lower() in seen:
                raise ValidationError(f"Two parameters bind ${bound}; rename one.")
            seen.add(bound.lower())
    return checked


def parameters_from_json(data: object) -> list[Parameter]:
    """Parameters from their JSON form, in order."""
    if not isinstance(data, list):
        raise ValidationError("A notebook's parameters must be a list.")
    return validate_parameters([Parameter.from_json(item) for item in data])


def parameters_to_json(parameters: list[Parameter]) -> list[dict[str, str]]:
    """The parameters as a JSON-ready list."""
    return [p.to_json() for p in parameters]


def parse_declarations(text: str) -> list[Parameter]:
    """Parameters from ``name: type = default`` lines (blank lines and ``#`` comments skipped)."""
    parameters = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = DECLARATION.fullmatch(line)
        if match is None:
            raise ValidationError(
                f"Parameter line {number} ({line.strip()!r}) is not `name: type = default`."
            )
        parameters.append(parameter(match[1], match[2], (match[3] or "").strip()))
    return validate_parameters(parameters)


def declarations(parameters: list[Parameter]) -> str:
    """The parameters as ``params`` block lines."""
    return "\n".join(p.declaration() for p in parameters)


# --- values ------------------------------------------------------------------------------------


def parse_value(declared: Parameter, text: str, *, today: date) -> Value:
    """The value a text form means for ``declared`` (None for empty text)."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_VALUE_CHARS:
        raise ValidationError(f"A value of {declared.name} has at most {MAX_VALUE_CHARS} chars.")
    try:
        return _parsed(declared.type, text, today)
    except (ValueError, OverflowError) as exc:  # "today-99999999" leaves the calendar
        raise ValidationError(
            f"{text!r} is not a value of {declared.name} ({declared.type}): {_expected(declared)}."
        ) from exc


def _parsed(kind: ParameterType, text: str, today: date) -> Value:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "date":
        return _day(text, today)
    if kind == "date_range":
        last_days = LAST_DAYS.match(text)
        if last_days:
            days = int(last_days[1])
            if days < 1:
                raise ValueError("a range has at least one day")
            return (today - timedelta(days=days - 1), today)
        first, separator, last = text.partition(RANGE_SEPARATOR)
        if not separator:
            raise ValueError("no '..' between the days")
        start, end = _day(first.strip(), today), _day(last.strip(), today)
        return (min(start, end), max(start, end))
    return text


def _day(text: str, today: date) -> date:
    relative = TODAY.match(text)
    day = today - timedelta(days=int(relative[1] or 0)) if relative else date.fromisoformat(text)
    if day == date.max:  # a range binds the day after its last one
        raise ValueError("the last day of the calendar cannot be chosen")
    return day


def _expected(declared: Parameter) -> str:
    return {
        "int": "a whole number",
        "float": "a number",
        "date": "YYYY-MM-DD, today or today-N",
        "date_range": "YYYY-MM-DD..YYYY-MM-DD or last N days",
    }.get(declared.type, "text")


def format_value(declared: Parameter, value: Value) -> str:
    """The text form of a value (``parse_value``'s inverse); empty for None."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"{value[0].isoformat()}{RANGE_SEPARATOR}{value[1].isoformat()}"
    if isinstance(value, date):
        return value.isoformat()
    if declared.type == "int" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def chosen_values(
    parameters: list[Parameter], chosen: dict[str, str], *, today: date
) -> dict[str, Value]:
    """Each parameter's value: the chosen text where there is one, else its default."""
    unknown = sorted(set(chosen) - {p.name for p in parameters})
    if unknown:
        names = ", ".join(p.name for p in parameters) or "none"
        raise ValidationError(f"This notebook has no parameter {unknown[0]!r} (it has: {names}).")
    return {p.name: parse_value(p, chosen.get(p.name, p.default), today=today) for p in parameters}


def bindings(parameters: list[Parameter], values: dict[str, Value]) -> dict[str, Bound]:
    """Every ``$name`` the notebook's SQL may use, with the value DuckDB binds to it."""
    bound: dict[str, Bound] = {}
    for declared in parameters:
        value = values.get(declared.name)
        if declared.type == "date_range":
            days = value if isinstance(value, tuple) else None
            start, end = declared.bound_names
            bound[start] = None if days is None else _midnight(days[0])
            bound[end] = None if days is None else _midnight(days[1] + timedelta(days=1))
        else:
            bound[declared.name] = cast(Bound, value)
    return bound


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min)  # naive UTC, like events.ts


def bound_to_json(value: Bound) -> dict[str, object]:
    """A bound value as it travels to the query process (typed, so a date stays a date)."""
    if isinstance(value, datetime):
        return {"type": "timestamp", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    return {"type": "value", "value": value}


def bound_from_json(data: dict[str, object]) -> Bound:
    """The value ``bound_to_json`` sent."""
    value = data.get("value")
    if data.get("type") == "timestamp":
        return datetime.fromisoformat(str(value))
    if data.get("type") == "date":
        return date.fromisoformat(str(value))
    return cast(Bound, value)
