"""Tests for backend.domain.catalog: the shipped 部件/事件 catalog, lookups and validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from backend.domain.catalog import (
    CLOCKS,
    DATA_FILE,
    STAGES,
    Catalog,
    CatalogError,
    TimeLimit,
    UnknownClass,
    default_catalog,
)

DEPT_TYPES = {
    "water", "drainage", "power", "streetlight", "telecom", "gas", "heating", "public_security",
    "fire", "traffic", "roads", "sanitation", "greening", "law_enforcement", "housing",
    "environment", "water_affairs", "market", "civil_affairs", "street_office",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture()
def raw() -> dict:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _index_of(data: dict, key: str) -> int:
    for i, entry in enumerate(data["classes"]):
        if entry["kind"] + entry["code"] == key:
            return i
    raise AssertionError(key)


# --- the shipped data --------------------------------------------------------------------------


def test_every_class_has_a_positive_limit_for_every_stage(catalog: Catalog) -> None:
    assert len(catalog) > 100
    for c in catalog.classes:
        assert set(c.limits) == set(STAGES), c.key
        for stage in STAGES:
            limit = c.limit(stage)
            assert limit.value > 0 and limit.clock in CLOCKS, (c.key, stage)


def test_majors_of_both_kinds_are_those_of_the_old_scheme(catalog: Catalog) -> None:
    majors = {(m.kind, m.code): m.name for m in catalog.majors}
    assert majors == {
        ("C", "01"): "公用设施", ("C", "02"): "道路交通", ("C", "03"): "市容环境",
        ("C", "04"): "园林绿化", ("C", "05"): "房屋土地", ("C", "06"): "其他设施",
        ("C", "21"): "扩展部件",
        ("E", "01"): "市容环境", ("E", "02"): "宣传广告", ("E", "03"): "施工管理",
        ("E", "04"): "突发事件", ("E", "05"): "街面秩序",
    }
    for major in catalog.majors:
        assert catalog.classes_of(major.kind, major.code), major.key


def test_listed_subclasses_are_present(catalog: Catalog) -> None:
    component_01 = [c.code for c in catalog.classes_of("C", "01")]
    assert component_01 == [f"01{n:02d}" for n in range(1, 39)]  # 0101..0138 incl. 0110 from B
    for key in ("E0199", "E0399", "E0499", "E0599", "C0217", "C0310", "C0410", "C0503",
                "C0606", "C2133", "E0118", "E0205", "E0305", "E0409", "E0513"):
        assert key in catalog, key
    assert "C0605" not in catalog  # not listed in the source


def test_source_a_name_wins_and_source_b_name_is_kept_as_alias(catalog: Catalog) -> None:
    assert (catalog.get("C0107").name, catalog.get("C0107").alias) == ("通讯井盖", "电信井盖")
    assert (catalog.get("C0210").name, catalog.get("C0210").alias) == ("交通信号灯", "交通控制箱")
    assert (catalog.get("E0101").name, catalog.get("E0101").alias) == ("私搭乱建", "新增建筑")
    assert catalog.get("C0101").alias is None
    assert catalog.get("C0110").name == "热力井盖"  # only source B lists it


def test_dept_types_are_the_agreed_list(catalog: Catalog) -> None:
    assert set(catalog.dept_types) == DEPT_TYPES
    assert catalog.dept_types["sanitation"] == "环卫"
    assert {c.dept_type for c in catalog.classes} <= DEPT_TYPES


def test_time_limits_follow_the_reference_examples(catalog: Catalog) -> None:
    assert catalog.get("E0102").limit("dispose") == TimeLimit(4, "work_hour")  # 暴露垃圾
    assert catalog.get("E0101").limit("dispose") == TimeLimit(20, "work_day")  # 私搭乱建
    assert catalog.get("E0102").limit("check") == TimeLimit(1, "work_hour")  # 核查 1 h
    for c in catalog.classes_of("E", "04"):  # 突发事件
        assert c.is_urgent, c.key
        assert {c.limit(s).clock for s in STAGES} == {"urgent_hour"}, c.key
    for key in ("C0101", "C0102", "C0103", "C0111"):  # manhole covers
        assert catalog.get(key).urgency == "urgent"


def test_register_plus_dispatch_fit_the_10_and_30_minute_rules(catalog: Catalog) -> None:
    for c in catalog.classes:
        minutes = (c.limit("register").value + c.limit("dispatch").value) * 60
        if c.is_urgent:
            assert minutes <= 10, c.key
        else:
            assert c.limit("register").clock == "work_hour"
            assert minutes == pytest.approx(30), c.key


def test_limits_cannot_be_changed_through_the_shared_catalog(catalog: Catalog) -> None:
    with pytest.raises(TypeError):
        catalog.get("E0102").limits["dispose"] = TimeLimit(1, "work_hour")  # type: ignore[index]


def test_time_limit_label() -> None:
    assert TimeLimit(4, "work_hour").label == "4工作时"
    assert TimeLimit(0.5, "urgent_hour").label == "0.5紧急工作时"
    assert TimeLimit(20.0, "work_day").label == "20工作日"


# --- lookups ------------------------------------------------------------------------------------


def test_get_by_class_code(catalog: Catalog) -> None:
    assert catalog.get("C0101").name == "上水井盖"
    assert catalog.get("E0101").name == "私搭乱建"
    assert catalog.get(" e0102 ").key == "E0102"
    assert catalog.major_of(catalog.get("E0401")).name == "突发事件"


@pytest.mark.parametrize("key", ["C9999", "0101", "X0101", "", "C01011"])
def test_get_unknown_key_is_a_clear_error(catalog: Catalog, key: str) -> None:
    with pytest.raises(UnknownClass, match="unknown class"):
        catalog.get(key)


def test_get_rejects_non_strings(catalog: Catalog) -> None:
    with pytest.raises(UnknownClass):
        catalog.get(101)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind", "expected"),
    [
        ("E0102", None, "E0102"),
        ("0102", "E", "E0102"),
        ("0102", "event", "E0102"),
        ("0102", "事件", "E0102"),
        ("0102", "C", "C0102"),
        ("0102", "component", "C0102"),
        ("0121", None, "C0121"),  # only 部件 has 0121
        ("0199", None, "E0199"),  # only 事件 has 0199
        ("2133", None, "C2133"),
    ],
)
def test_resolve(catalog: Catalog, code: str, kind: str | None, expected: str) -> None:
    assert catalog.resolve(code, kind).key == expected


def test_resolve_ambiguous_four_digit_code_names_both_candidates(catalog: Catalog) -> None:
    with pytest.raises(UnknownClass) as info:
        catalog.resolve("0101")
    message = str(info.value)
    assert "ambiguous" in message
    assert "C0101" in message and "上水井盖" in message
    assert "E0101" in message and "私搭乱建" in message


@pytest.mark.parametrize(
    ("code", "kind", "fragment"),
    [
        ("E0102", "C", "kind"),  # the kind letter and the kind argument disagree
        ("0102", "x", "unknown kind"),
        ("abc", None, "cannot read"),
        ("9999", None, "no class"),
        ("0121", "E", "unknown class"),
    ],
)
def test_resolve_bad_input(catalog: Catalog, code: str, kind: str | None, fragment: str) -> None:
    with pytest.raises(UnknownClass, match=fragment):
        catalog.resolve(code, kind)


# --- validation ---------------------------------------------------------------------------------


def _set(key: str, field: str, value: object):
    def mutate(data: dict) -> None:
        data["classes"][_index_of(data, key)][field] = value
    return mutate


def _set_limit(key: str, stage: str, value: object):
    def mutate(data: dict) -> None:
        data["classes"][_index_of(data, key)].setdefault("limits", {})[stage] = value
    return mutate


def _duplicate(key: str):
    def mutate(data: dict) -> None:
        data["classes"].append(copy.deepcopy(data["classes"][_index_of(data, key)]))
    return mutate


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (_set("E0102", "code", "102"), ["暴露垃圾", "4 digits"]),
        (_set("E0102", "code", "01O2"), ["暴露垃圾", "4 digits"]),
        (_set("E0102", "major", "09"), ["E0102", "major"]),
        (_set("E0102", "kind", "X"), ["X0102", "kind"]),
        (_set("E0102", "dept_type", "police"), ["E0102", "police"]),
        (_set("E0102", "urgency", "high"), ["E0102", "urgency"]),
        (_set("E0102", "colour", "red"), ["E0102", "colour"]),
        (_set_limit("E0102", "dispose", {"value": 4, "clock": "work_minute"}), ["E0102", "dispose", "work_minute"]),
        (_set_limit("E0102", "dispose", {"value": 0, "clock": "work_hour"}), ["E0102", "dispose", "> 0"]),
        (_set_limit("E0102", "dispose", {"value": -2, "clock": "work_hour"}), ["E0102", "> 0"]),
        (_set_limit("E0102", "dispose", {"value": "4", "clock": "work_hour"}), ["E0102", "number"]),
        (_set_limit("E0102", "dispose", {"value": 4}), ["E0102", "clock"]),
        (_set_limit("E0102", "repair", {"value": 4, "clock": "work_hour"}), ["E0102", "repair"]),
        (_duplicate("C0305"), ["C0305", "twice"]),
    ],
)
def test_invalid_entries_are_refused_naming_the_entry(raw: dict, mutate, fragments: list[str]) -> None:
    mutate(raw)
    with pytest.raises(CatalogError) as info:
        Catalog.from_dict(raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_stage_without_defaults_is_refused(raw: dict) -> None:
    raw["defaults"]["normal"].pop("check")
    with pytest.raises(CatalogError, match="check"):
        Catalog.from_dict(raw)


def test_unknown_major_class_is_refused(raw: dict) -> None:
    raw["majors"] = [m for m in raw["majors"] if not (m["kind"] == "C" and m["code"] == "21")]
    with pytest.raises(CatalogError, match="C21"):
        Catalog.from_dict(raw)


@pytest.mark.parametrize("data", [[], {"majors": [], "classes": []}, {"dept_types": {}, "majors": [], "classes": []}])
def test_malformed_top_level_is_refused(data: object) -> None:
    with pytest.raises(CatalogError):
        Catalog.from_dict(data)


def test_defaults_are_applied_and_entries_override(raw: dict) -> None:
    raw["defaults"]["normal"]["check"] = {"value": 2, "clock": "work_hour"}
    catalog = Catalog.from_dict(raw)
    assert catalog.get("E0102").limit("check") == TimeLimit(2, "work_hour")  # from defaults
    assert catalog.get("E0102").limit("dispose") == TimeLimit(4, "work_hour")  # entry override


# --- files -----------------------------------------------------------------------------------


def test_to_dict_has_the_shape_of_the_shipped_file(catalog: Catalog, raw: dict) -> None:
    assert catalog.to_dict() == raw


def test_replace_the_catalog_from_a_city_file(tmp_path: Path, raw: dict) -> None:
    entry = raw["classes"][_index_of(raw, "E0102")]
    entry["limits"] = {"dispose": {"value": 2, "clock": "work_hour"}}
    entry["dept_type"] = "street_office"
    path = tmp_path / "city.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")

    city = Catalog.load(path)

    assert city.get("E0102").limit("dispose") == TimeLimit(2, "work_hour")
    assert city.get("E0102").dept_type == "street_office"
    assert default_catalog().get("E0102").limit("dispose") == TimeLimit(4, "work_hour")
    again = Catalog.from_dict(json.loads(json.dumps(city.to_dict())))
    assert again.classes == city.classes
    assert again.majors == city.majors


def test_load_reports_bad_files_with_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="broken.json"):
        Catalog.load(broken)
    with pytest.raises(CatalogError, match="cannot read"):
        Catalog.load(tmp_path / "missing.json")


def test_default_catalog_is_loaded_once() -> None:
    assert default_catalog() is default_catalog()
