"""Case classes (部件/事件分类) and their stage time limits (工作时限).

The catalog follows the old 4-digit scheme of CJ/T 214 / GB/T 30428.2: a class code is
2 digits of major class (大类) + 2 digits of subclass (小类).  Component (部件) and event
(事件) codes overlap (0101 上水井盖 vs 0101 私搭乱建), so a class is keyed by a kind letter
and the code: ``C0101`` (部件) or ``E0101`` (事件).  That 5-character key is the
``class_code`` used by the rest of the system.

Each class carries a time limit for every stage of a case (受理, 核实, 立案, 派遣, 处置, 核查,
结案).  The shipped data lives in ``backend/data/catalog.json``; a city can load its own file
of the same shape with :meth:`Catalog.load`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "catalog.json"

KINDS: dict[str, str] = {"C": "部件", "E": "事件"}
"""Kind letters: C = 部件 (component), E = 事件 (event)."""

_KIND_WORDS: dict[str, str] = {
    "c": "C", "component": "C", "部件": "C",
    "e": "E", "event": "E", "事件": "E",
}

STAGES: tuple[str, ...] = ("accept", "verify", "register", "dispatch", "dispose", "check", "close")
"""Stage ids in workflow order: 受理, 核实, 立案, 派遣, 处置, 核查, 结案."""

STAGE_NAMES: dict[str, str] = {
    "accept": "受理", "verify": "核实", "register": "立案", "dispatch": "派遣",
    "dispose": "处置", "check": "核查", "close": "结案",
}

CLOCKS: dict[str, str] = {
    "work_hour": "工作时",
    "urgent_hour": "紧急工作时",
    "work_day": "工作日",
    "natural_day": "自然日",
}
"""Clock ids: 工作时 (working hours only), 紧急工作时 (continuous hours, nights and holidays
included), 工作日 (working days, 1 day = 8 working hours), 自然日 (continuous calendar days)."""

URGENCIES: tuple[str, ...] = ("normal", "urgent")
"""一般 / 紧急."""


class CatalogError(ValueError):
    """The catalog data is invalid (bad code, unknown major, bad clock, ...)."""


class UnknownClass(ValueError):
    """No class matches the given key or code, or a bare 4-digit code is ambiguous."""


@dataclass(frozen=True)
class TimeLimit:
    """A stage time limit (时限): ``value`` units of the clock ``clock`` (one of CLOCKS)."""

    value: float
    clock: str

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise CatalogError(f"time limit value must be a number, got {self.value!r}")
        if not math.isfinite(self.value) or self.value <= 0:
            raise CatalogError(f"time limit value must be > 0, got {self.value!r}")
        if self.clock not in CLOCKS:
            raise CatalogError(
                f"unknown clock {self.clock!r}; expected one of {', '.join(CLOCKS)}"
            )

    @property
    def label(self) -> str:
        """Chinese label, e.g. ``"4工作时"`` or ``"0.5紧急工作时"``."""
        return f"{_plain_number(self.value)}{CLOCKS[self.clock]}"

    def to_dict(self) -> dict[str, Any]:
        return {"value": _plain_number(self.value), "clock": self.clock}

    @classmethod
    def from_dict(cls, data: Any) -> TimeLimit:
        if not isinstance(data, Mapping):
            raise CatalogError(f"time limit must be an object with value and clock, got {data!r}")
        extra = set(data) - {"value", "clock"}
        if extra:
            raise CatalogError(f"time limit has unknown fields {sorted(extra)}")
        if "value" not in data or "clock" not in data:
            raise CatalogError(f"time limit needs both value and clock, got {dict(data)!r}")
        return cls(data["value"], data["clock"])


def _plain_number(value: float) -> float | int:
    """1.0 -> 1, 0.5 -> 0.5 (for tidy JSON and labels)."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class MajorClass:
    """A major class (大类), e.g. C 01 公用设施, E 04 突发事件."""

    kind: str
    code: str
    name: str

    @property
    def key(self) -> str:
        """Kind letter + 2-digit code, e.g. ``"E04"``."""
        return self.kind + self.code

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "code": self.code, "name": self.name}


@dataclass(frozen=True)
class CaseClass:
    """A subclass (小类) of 部件 or 事件 with its responsible department type and time limits.

    ``limits`` maps every stage id in STAGES to its TimeLimit (read-only mapping).
    """

    kind: str
    code: str
    name: str
    major: str
    dept_type: str
    urgency: str
    limits: Mapping[str, TimeLimit] = field(hash=False)
    alias: str | None = None

    def __post_init__(self) -> None:
        # Freeze the mapping so a shared (cached) catalog cannot be changed by a caller.
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    @property
    def key(self) -> str:
        """The class_code: kind letter + 4-digit code, e.g. ``"C0101"``."""
        return self.kind + self.code

    @property
    def kind_name(self) -> str:
        """部件 or 事件."""
        return KINDS[self.kind]

    @property
    def is_urgent(self) -> bool:
        """True for 紧急 classes (e.g. 突发事件, missing manhole covers)."""
        return self.urgency == "urgent"

    def limit(self, stage: str) -> TimeLimit:
        """The time limit of one stage; ValueError for an unknown stage id."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        return self.limits[stage]


def _entry_label(index: int, entry: Any) -> str:
    """Name a data-file entry in error messages: 'classes[3] (C0104 雨水箅子)'."""
    if isinstance(entry, Mapping):
        kind = entry.get("kind", "?")
        code = entry.get("code", "?")
        name = entry.get("name", "")
        return f"entry #{index} ({kind}{code} {name})".replace(" )", ")")
    return f"entry #{index}"


def _is_digits(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and value.isascii() and value.isdigit()


def _parse_limits(raw: Any, where: str) -> dict[str, TimeLimit]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: limits must be an object keyed by stage")
    limits: dict[str, TimeLimit] = {}
    for stage, value in raw.items():
        if stage not in STAGES:
            raise CatalogError(
                f"{where}: unknown stage {stage!r}; expected one of {', '.join(STAGES)}"
            )
        try:
            limits[stage] = TimeLimit.from_dict(value)
        except CatalogError as exc:
            raise CatalogError(f"{where}, stage {stage}: {exc}") from None
    return limits


class Catalog:
    """The set of major classes, case classes and department types in use.

    Build one with :meth:`from_dict` / :meth:`load`, or use :func:`default_catalog` for the
    shipped CJ/T 214-era catalog.
    """

    def __init__(
        self,
        classes: Iterable[CaseClass],
        majors: Iterable[MajorClass],
        dept_types: Mapping[str, str],
        defaults: Mapping[str, Mapping[str, TimeLimit]] | None = None,
        scheme: str | None = None,
    ) -> None:
        self._majors: dict[str, MajorClass] = {}
        for major in majors:
            if major.kind not in KINDS:
                raise CatalogError(f"major class {major.code}: unknown kind {major.kind!r}")
            if not _is_digits(major.code, 2):
                raise CatalogError(f"major class {major.kind}{major.code}: code must be 2 digits")
            if major.key in self._majors:
                raise CatalogError(f"major class {major.key} is listed twice")
            self._majors[major.key] = major
        self._dept_types = dict(dept_types)
        self._defaults = {u: dict(limits) for u, limits in (defaults or {}).items()}
        self.scheme = scheme
        self._classes: dict[str, CaseClass] = {}
        for index, case_class in enumerate(classes):
            self._check_class(index, case_class)
            self._classes[case_class.key] = case_class
        self._by_code: dict[str, list[CaseClass]] = {}
        for case_class in self._classes.values():
            self._by_code.setdefault(case_class.code, []).append(case_class)

    def _check_class(self, index: int, c: CaseClass) -> None:
        where = f"class entry #{index} ({c.kind}{c.code} {c.name})".replace(" )", ")")
        if not isinstance(c.kind, str) or c.kind not in KINDS:
            raise CatalogError(f"{where}: kind must be 'C' (部件) or 'E' (事件), got {c.kind!r}")
        if not _is_digits(c.code, 4):
            raise CatalogError(f"{where}: code must be 4 digits, got {c.code!r}")
        if not isinstance(c.name, str) or not c.name.strip():
            raise CatalogError(f"{where}: name must be a non-empty string")
        if c.major != c.code[:2]:
            raise CatalogError(f"{where}: major {c.major!r} does not match the code {c.code}")
        if c.kind + c.major not in self._majors:
            raise CatalogError(f"{where}: major class {c.kind}{c.major} is not defined")
        if not isinstance(c.dept_type, str) or c.dept_type not in self._dept_types:
            raise CatalogError(f"{where}: unknown dept_type {c.dept_type!r}")
        if c.urgency not in URGENCIES:
            raise CatalogError(f"{where}: urgency must be 'normal' or 'urgent', got {c.urgency!r}")
        if c.alias is not None and (not isinstance(c.alias, str) or not c.alias.strip()):
            raise CatalogError(f"{where}: alias must be a non-empty string or absent")
        missing = [s for s in STAGES if s not in c.limits]
        if missing:
            raise CatalogError(f"{where}: no time limit for stage(s) {', '.join(missing)}")
        extra = [s for s in c.limits if s not in STAGES]
        if extra:
            raise CatalogError(f"{where}: unknown stage(s) {', '.join(extra)}")
        for stage, limit in c.limits.items():
            if not isinstance(limit, TimeLimit):
                raise CatalogError(f"{where}, stage {stage}: not a TimeLimit")
        if c.key in self._classes:
            raise CatalogError(f"{where}: class {c.key} is listed twice")

    # --- lookups -------------------------------------------------------------------------

    @property
    def classes(self) -> list[CaseClass]:
        """All case classes, in file order."""
        return list(self._classes.values())

    @property
    def majors(self) -> list[MajorClass]:
        """All major classes (大类), in file order."""
        return list(self._majors.values())

    @property
    def dept_types(self) -> dict[str, str]:
        """Department type id -> Chinese name, e.g. ``{"sanitation": "环卫", ...}``."""
        return dict(self._dept_types)

    def __len__(self) -> int:
        return len(self._classes)

    def __iter__(self) -> Iterator[CaseClass]:
        return iter(self._classes.values())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.strip().upper() in self._classes

    def get(self, key: str) -> CaseClass:
        """The class for a 5-character class_code such as ``"C0101"`` or ``"E0102"``."""
        if not isinstance(key, str):
            raise UnknownClass(f"class code must be a string like 'C0101', got {key!r}")
        found = self._classes.get(key.strip().upper())
        if found is None:
            raise UnknownClass(
                f"unknown class {key!r}: expected C (部件) or E (事件) + a 4-digit code in the "
                f"catalog, e.g. 'C0101'"
            )
        return found

    def resolve(self, code: str, kind: str | None = None) -> CaseClass:
        """Find a class from a loose code.

        Accepts a class_code (``"E0102"``), or a 4-digit code with ``kind`` given as
        ``"C"``/``"component"``/``"部件"`` or ``"E"``/``"event"``/``"事件"``.  A bare 4-digit code
        without kind is accepted only when exactly one kind has it; otherwise UnknownClass
        names the candidates.
        """
        if not isinstance(code, str):
            raise UnknownClass(f"class code must be a string, got {code!r}")
        text = code.strip().upper()
        kind_letter = self._kind_letter(kind)
        if len(text) == 5 and text[0] in KINDS:
            if kind_letter is not None and kind_letter != text[0]:
                raise UnknownClass(
                    f"class {code!r} is a {KINDS[text[0]]} code but kind {kind!r} was given"
                )
            return self.get(text)
        if not _is_digits(text, 4):
            raise UnknownClass(
                f"cannot read class code {code!r}: expected e.g. 'C0101', 'E0102' or a 4-digit code"
            )
        if kind_letter is not None:
            return self.get(kind_letter + text)
        candidates = self._by_code.get(text, [])
        if not candidates:
            raise UnknownClass(f"no class has the code {text}")
        if len(candidates) > 1:
            listed = " or ".join(f"{c.key} {c.name} ({c.kind_name})" for c in candidates)
            raise UnknownClass(f"code {text} is ambiguous: {listed}; give the kind")
        return candidates[0]

    @staticmethod
    def _kind_letter(kind: str | None) -> str | None:
        if kind is None:
            return None
        letter = _KIND_WORDS.get(str(kind).strip().lower())
        if letter is None:
            raise UnknownClass(f"unknown kind {kind!r}: use 'C'/'component'/'部件' or 'E'/'event'/'事件'")
        return letter

    def major_of(self, case_class: CaseClass) -> MajorClass:
        """The major class (大类) of a case class."""
        return self._majors[case_class.kind + case_class.major]

    def classes_of(self, kind: str, major: str | None = None) -> list[CaseClass]:
        """The classes of one kind (``"C"``/``"E"``), optionally of one major (``"01"``)."""
        letter = self._kind_letter(kind)
        return [
            c for c in self._classes.values()
            if c.kind == letter and (major is None or c.major == major)
        ]

    # --- (de)serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the same shape as the data file (loadable by from_dict).

        Class limits equal to the file-level defaults for the class's urgency are left out.
        """
        data: dict[str, Any] = {}
        if self.scheme is not None:
            data["scheme"] = self.scheme
        data["dept_types"] = dict(self._dept_types)
        data["defaults"] = {
            urgency: {stage: limit.to_dict() for stage, limit in limits.items()}
            for urgency, limits in self._defaults.items()
        }
        data["majors"] = [m.to_dict() for m in self._majors.values()]
        classes = []
        for c in self._classes.values():
            entry: dict[str, Any] = {
                "kind": c.kind, "code": c.code, "name": c.name, "major": c.major,
                "dept_type": c.dept_type, "urgency": c.urgency,
            }
            if c.alias is not None:
                entry["alias"] = c.alias
            base = self._defaults.get(c.urgency, {})
            overrides = {
                stage: c.limits[stage].to_dict() for stage in STAGES if base.get(stage) != c.limits[stage]
            }
            if overrides:
                entry["limits"] = overrides
            classes.append(entry)
        data["classes"] = classes
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Catalog:
        """Build and validate a catalog; CatalogError names the first bad entry."""
        if not isinstance(data, Mapping):
            raise CatalogError("catalog data must be a JSON object")
        for required in ("dept_types", "majors", "classes"):
            if required not in data:
                raise CatalogError(f"catalog data has no {required!r}")

        dept_types = data["dept_types"]
        if not isinstance(dept_types, Mapping) or not dept_types:
            raise CatalogError("dept_types must be a non-empty object of id -> name")
        for dept_id, dept_name in dept_types.items():
            if not isinstance(dept_name, str) or not dept_name.strip():
                raise CatalogError(f"dept_types[{dept_id!r}]: name must be a non-empty string")

        defaults_raw = data.get("defaults") or {}
        if not isinstance(defaults_raw, Mapping):
            raise CatalogError("defaults must be an object keyed by urgency (normal, urgent)")
        defaults: dict[str, dict[str, TimeLimit]] = {}
        for urgency, limits in defaults_raw.items():
            if urgency not in URGENCIES:
                raise CatalogError(f"defaults: unknown urgency {urgency!r}; expected normal or urgent")
            defaults[urgency] = _parse_limits(limits, f"defaults[{urgency}]")

        majors_raw = data["majors"]
        if not isinstance(majors_raw, list):
            raise CatalogError("majors must be a list")
        majors = []
        for index, entry in enumerate(majors_raw):
            where = f"major {_entry_label(index, entry)}"
            if not isinstance(entry, Mapping):
                raise CatalogError(f"{where}: must be an object with kind, code, name")
            kind, code, name = entry.get("kind"), entry.get("code"), entry.get("name")
            if kind not in KINDS:
                raise CatalogError(f"{where}: kind must be 'C' or 'E', got {kind!r}")
            if not _is_digits(code, 2):
                raise CatalogError(f"{where}: code must be 2 digits, got {code!r}")
            if not isinstance(name, str) or not name.strip():
                raise CatalogError(f"{where}: name must be a non-empty string")
            majors.append(MajorClass(kind, code, name))

        classes_raw = data["classes"]
        if not isinstance(classes_raw, list):
            raise CatalogError("classes must be a list")
        known_fields = {"kind", "code", "name", "major", "dept_type", "urgency", "limits", "alias"}
        classes = []
        for index, entry in enumerate(classes_raw):
            where = f"class {_entry_label(index, entry)}"
            if not isinstance(entry, Mapping):
                raise CatalogError(f"{where}: must be an object")
            extra = set(entry) - known_fields
            if extra:
                raise CatalogError(f"{where}: unknown field(s) {sorted(extra)}")
            missing = [f for f in ("kind", "code", "name", "major", "dept_type", "urgency") if f not in entry]
            if missing:
                raise CatalogError(f"{where}: missing field(s) {', '.join(missing)}")
            if not _is_digits(entry["code"], 4):
                raise CatalogError(f"{where}: code must be 4 digits, got {entry['code']!r}")
            if not _is_digits(entry["major"], 2):
                raise CatalogError(f"{where}: major must be 2 digits, got {entry['major']!r}")
            urgency = entry["urgency"]
            if urgency not in URGENCIES:
                raise CatalogError(f"{where}: urgency must be 'normal' or 'urgent', got {urgency!r}")
            limits = dict(defaults.get(urgency, {}))
            limits.update(_parse_limits(entry.get("limits"), where))
            classes.append(
                CaseClass(
                    kind=entry["kind"], code=entry["code"], name=entry["name"],
                    major=entry["major"], dept_type=entry["dept_type"], urgency=urgency,
                    limits=limits, alias=entry.get("alias"),
                )
            )
        scheme = data.get("scheme")
        if scheme is not None and not isinstance(scheme, str):
            raise CatalogError("scheme must be a string")
        return cls(classes, majors, dept_types, defaults=defaults, scheme=scheme)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Load and validate a catalog JSON file (e.g. a city's own catalog)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"cannot read catalog file {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"catalog file {path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except CatalogError as exc:
            raise CatalogError(f"catalog file {path}: {exc}") from None


@cache
def default_catalog() -> Catalog:
    """The shipped catalog (backend/data/catalog.json), loaded once."""
    return Catalog.load(DATA_FILE)
