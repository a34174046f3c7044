"""The demo city (演示城区): 北京市东城区, the birthplace of the 万米单元网格 method.

:func:`build_city` generates, as a pure function of its seed and with no I/O, everything the
system needs as base data (基础数据): the district, its 17 real streets (街道) with their real
9-digit codes, communities (社区), unit grids (单元网格, 15-digit codes), named roads and a road
graph, departments (专业部门) and responsibility rules (责任划分), inspectors and their duty grids
(责任网格), demo users, components (部件, 16-digit 标识码) and cameras.

Geometry is approximate. Precise street and community boundaries are not available offline, so
the district outline and the streets are an approximate tiling laid out roughly where they
really are (north part: old 东城 between 天安门/故宫 and 和平里; south part: ex-崇文 between 前门大街
and 左安门). Main roads sit at their approximate real positions as straight north-south and
east-west lines (the old city is close to such a grid). Unit grids are the blocks cut by the main
roads and by a lattice of minor streets (胡同), merged or halved to 0.05–0.15 km² each. All
coordinates are WGS-84 (lon, lat in GeoJSON); the work is done in a local metric projection.
"""
from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry

from backend.domain.catalog import Catalog, default_catalog
from backend.domain.grid import Responsibilities, ResponsibilityRule
from backend.sim import names

DEFAULT_SEED = 2004
"""The default seed (东城区 started 万米单元网格 management in 2004)."""

DISTRICT_CODE = "110101"
DISTRICT_NAME = "东城区"
CITY_NAME = "北京市"
DEMO_PASSWORD = "demo1234"

MIN_GRID_M2 = 52_000.0
MAX_GRID_M2 = 148_000.0
"""Unit grid area limits (m²), a little inside 0.05-0.15 km² so other projections agree."""
LATTICE_SPACING_M = 340.0
"""Largest distance between minor streets (胡同) cutting a block."""


# --- local projection (lon/lat <-> metres) -----------------------------------------------------

_LON0, _LAT0 = 116.414, 39.915
_A, _E2 = 6378137.0, 0.00669437999014
_PHI = math.radians(_LAT0)
_W = 1.0 - _E2 * math.sin(_PHI) ** 2
M_PER_DEG_LAT = math.radians(_A * (1.0 - _E2) / (_W * math.sqrt(_W)))
M_PER_DEG_LON = math.radians(_A / math.sqrt(_W) * math.cos(_PHI))


def _to_m(xy: np.ndarray) -> np.ndarray:
    out = np.empty_like(xy)
    out[:, 0] = (xy[:, 0] - _LON0) * M_PER_DEG_LON
    out[:, 1] = (xy[:, 1] - _LAT0) * M_PER_DEG_LAT
    return out


def _to_deg(xy: np.ndarray) -> np.ndarray:
    out = np.empty_like(xy)
    out[:, 0] = np.round(xy[:, 0] / M_PER_DEG_LON + _LON0, 7)
    out[:, 1] = np.round(xy[:, 1] / M_PER_DEG_LAT + _LAT0, 7)
    return out


def to_metres(geometry: BaseGeometry) -> BaseGeometry:
    """Project a lon/lat geometry into the district's local metric plane (x east, y north)."""
    return shapely.transform(geometry, _to_m)


def to_lonlat(geometry: BaseGeometry) -> BaseGeometry:
    """Back from the local metric plane to lon/lat (rounded to 1e-7°, about 1 cm)."""
    return shapely.transform(geometry, _to_deg)


def _xy(lon: float, lat: float) -> tuple[float, float]:
    return (lon - _LON0) * M_PER_DEG_LON, (lat - _LAT0) * M_PER_DEG_LAT


def _lonlat(x: float, y: float) -> tuple[float, float]:
    return round(x / M_PER_DEG_LON + _LON0, 7), round(y / M_PER_DEG_LAT + _LAT0, 7)


def _geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """A GeoJSON geometry dict with plain lists (JSON-ready)."""
    def listify(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [listify(v) for v in value]
        return value
    data = mapping(geometry)
    return {"type": data["type"], "coordinates": listify(data["coordinates"])}


# --- the real layout (approximate) -------------------------------------------------------------

# Meridians (lon) and parallels (lat) of the main roads.
LON_QIANMEN = 116.3977      # 前门大街, 永定门内/外大街
LON_CHIZI = 116.4030        # 南池子/北池子大街
LON_HEYAN = 116.4065        # 正义路, 南/北河沿大街, 美术馆后街, 交道口南大街, 安定门内/外大街
LON_WANGFUJING = 116.4110   # 台基厂大街, 王府井大街
LON_DONGDAN = 116.4178      # 天坛东路, 崇文门外/内大街, 东单北大街, 东四南/北大街, 雍和宫大街
LON_HEPINGLI = 116.4230     # 和平里东街
LON_XINGFU = 116.4265       # 幸福大街
LON_XIAOJIE = 116.4290      # 北京站街, 朝阳门南/北小街, 东直门北小街
LON_LONGTAN = 116.4320      # 龙潭路
LON_ERHUAN_N = 116.4345     # 东二环 north of 东便门
LON_ERHUAN_S = 116.4430     # 东二环 south of 东便门

LAT_ANLELIN = 39.8610       # 安乐林路
LAT_ERHUAN_S = 39.8680      # 南二环
LAT_TIYUGUAN = 39.8830      # 体育馆路
LAT_TIANTAN = 39.8875       # 天坛路
LAT_LIANGGUANG = 39.8930    # 两广路
LAT_HUASHI = 39.8965        # 东花市大街
LAT_QIANSANMEN = 39.8995    # 前门东大街, 崇文门西/东大街
LAT_CHANGAN = 39.9075       # 东长安街, 建国门内大街
LAT_DONGHUAMEN = 39.9140    # 东华门大街
LAT_DENGSHIKOU = 39.9190    # 灯市口大街
LAT_WUSI = 39.9250          # 景山前街, 五四大街, 东四西大街, 朝阳门内大街
LAT_PINGAN = 39.9330        # 平安大街
LAT_JIAODAOKOU = 39.9400    # 鼓楼东大街, 交道口东大街, 东直门内大街
LAT_ERHUAN_N = 39.9480      # 北二环
LAT_HEPINGLI_Z = 39.9590    # 和平里中街
LAT_HEPINGLI_B = 39.9670    # 和平里北街

DISTRICT_OUTLINE: tuple[tuple[float, float], ...] = (
    (116.3890, 39.8985), (116.3960, 39.8985), (116.3960, 39.8670), (116.3850, 39.8670),
    (116.3830, 39.8600), (116.3840, 39.8550), (116.4080, 39.8550), (116.4130, 39.8570),
    (116.4130, 39.8670), (116.4450, 39.8670), (116.4450, 39.9010), (116.4355, 39.9010),
    (116.4355, 39.9490), (116.4320, 39.9540), (116.4300, 39.9660), (116.4250, 39.9750),
    (116.4040, 39.9750), (116.4010, 39.9660), (116.4010, 39.9490), (116.3950, 39.9490),
    (116.3950, 39.9262), (116.3890, 39.9262),
)
"""Approximate outline of 东城区 (lon, lat): north part (old 东城) and south part (ex-崇文)."""


@dataclass(frozen=True)
class MainRoad:
    """A main road (主干道) segment: name and its (lon, lat) polyline."""

    name: str
    points: tuple[tuple[float, float], ...]


def _ns(name: str, lon: float, lat_from: float, lat_to: float) -> MainRoad:
    return MainRoad(name, ((lon, lat_from), (lon, lat_to)))


def _ew(name: str, lat: float, lon_from: float, lon_to: float) -> MainRoad:
    return MainRoad(name, ((lon_from, lat), (lon_to, lat)))


MAIN_ROADS: tuple[MainRoad, ...] = (
    # north-south
    _ns("前门大街", LON_QIANMEN, LAT_TIANTAN, LAT_QIANSANMEN),
    _ns("永定门内大街", LON_QIANMEN, LAT_ERHUAN_S, LAT_TIANTAN),
    _ns("永定门外大街", LON_QIANMEN, 39.8560, LAT_ERHUAN_S),
    _ns("南池子大街", LON_CHIZI, LAT_CHANGAN, LAT_DONGHUAMEN),
    _ns("北池子大街", LON_CHIZI, LAT_DONGHUAMEN, LAT_WUSI),
    _ns("正义路", LON_HEYAN, LAT_QIANSANMEN, LAT_CHANGAN),
    _ns("南河沿大街", LON_HEYAN, LAT_CHANGAN, LAT_DONGHUAMEN),
    _ns("北河沿大街", LON_HEYAN, LAT_DONGHUAMEN, LAT_WUSI),
    _ns("美术馆后街", LON_HEYAN, LAT_WUSI, LAT_PINGAN),
    _ns("交道口南大街", LON_HEYAN, LAT_PINGAN, LAT_JIAODAOKOU),
    _ns("安定门内大街", LON_HEYAN, LAT_JIAODAOKOU, LAT_ERHUAN_N),
    _ns("安定门外大街", LON_HEYAN, LAT_ERHUAN_N, 39.9740),
    _ns("台基厂大街", LON_WANGFUJING, LAT_QIANSANMEN, LAT_CHANGAN),
    _ns("王府井大街", LON_WANGFUJING, LAT_CHANGAN, LAT_WUSI),
    _ns("天坛东路", LON_DONGDAN, LAT_ERHUAN_S, LAT_LIANGGUANG),
    _ns("崇文门外大街", LON_DONGDAN, LAT_LIANGGUANG, LAT_QIANSANMEN),
    _ns("崇文门内大街", LON_DONGDAN, LAT_QIANSANMEN, LAT_CHANGAN),
    _ns("东单北大街", LON_DONGDAN, LAT_CHANGAN, LAT_DENGSHIKOU),
    _ns("东四南大街", LON_DONGDAN, LAT_DENGSHIKOU, LAT_WUSI),
    _ns("东四北大街", LON_DONGDAN, LAT_WUSI, LAT_JIAODAOKOU),
    _ns("雍和宫大街", LON_DONGDAN, LAT_JIAODAOKOU, LAT_ERHUAN_N),
    _ns("和平里东街", LON_HEPINGLI, LAT_ERHUAN_N, LAT_HEPINGLI_B),
    _ns("幸福大街", LON_XINGFU, LAT_TIYUGUAN, LAT_LIANGGUANG),
    _ns("北京站街", LON_XIAOJIE, LAT_QIANSANMEN, LAT_CHANGAN),
    _ns("朝阳门南小街", LON_XIAOJIE, LAT_CHANGAN, LAT_WUSI),
    _ns("朝阳门北小街", LON_XIAOJIE, LAT_WUSI, LAT_JIAODAOKOU),
    _ns("东直门北小街", LON_XIAOJIE, LAT_JIAODAOKOU, LAT_ERHUAN_N),
    _ns("龙潭路", LON_LONGTAN, LAT_ERHUAN_S, LAT_LIANGGUANG),
    _ns("东二环", LON_ERHUAN_N, LAT_QIANSANMEN, LAT_ERHUAN_N),
    _ew("东二环", LAT_QIANSANMEN, LON_ERHUAN_N, LON_ERHUAN_S),
    _ns("东二环", LON_ERHUAN_S, LAT_ERHUAN_S, LAT_QIANSANMEN),
    # east-west
    _ew("东长安街", LAT_CHANGAN, 116.3900, LON_DONGDAN),
    _ew("建国门内大街", LAT_CHANGAN, LON_DONGDAN, LON_ERHUAN_N),
    _ew("前门东大街", LAT_QIANSANMEN, LON_QIANMEN, LON_HEYAN),
    _ew("崇文门西大街", LAT_QIANSANMEN, LON_HEYAN, LON_DONGDAN),
    _ew("崇文门东大街", LAT_QIANSANMEN, LON_DONGDAN, LON_ERHUAN_N),
    _ew("东华门大街", LAT_DONGHUAMEN, 116.4015, LON_WANGFUJING),
    _ew("灯市口大街", LAT_DENGSHIKOU, LON_HEYAN, LON_DONGDAN),
    _ew("景山前街", LAT_WUSI, 116.3900, LON_CHIZI),
    _ew("五四大街", LAT_WUSI, LON_CHIZI, LON_HEYAN),
    _ew("东四西大街", LAT_WUSI, LON_HEYAN, LON_DONGDAN),
    _ew("朝阳门内大街", LAT_WUSI, LON_DONGDAN, LON_ERHUAN_N),
    _ew("平安大街", LAT_PINGAN, 116.3955, LON_ERHUAN_N),
    _ew("鼓楼东大街", LAT_JIAODAOKOU, 116.3955, LON_HEYAN),
    _ew("交道口东大街", LAT_JIAODAOKOU, LON_HEYAN, LON_DONGDAN),
    _ew("东直门内大街", LAT_JIAODAOKOU, LON_DONGDAN, LON_ERHUAN_N),
    _ew("北二环", LAT_ERHUAN_N, 116.3955, LON_ERHUAN_N),
    _ew("和平里中街", LAT_HEPINGLI_Z, 116.4020, 116.4300),
    _ew("和平里北街", LAT_HEPINGLI_B, 116.4025, 116.4285),
    _ew("两广路", LAT_LIANGGUANG, LON_QIANMEN, LON_ERHUAN_S),
    _ew("东花市大街", LAT_HUASHI, LON_DONGDAN, LON_ERHUAN_S),
    _ew("天坛路", LAT_TIANTAN, LON_QIANMEN, LON_DONGDAN),
    _ew("体育馆路", LAT_TIYUGUAN, LON_DONGDAN, LON_ERHUAN_S),
    _ew("南二环", LAT_ERHUAN_S, LON_QIANMEN, LON_ERHUAN_S),
    _ew("安乐林路", LAT_ANLELIN, 116.3850, 116.4120),
)

PARKS: dict[str, tuple[float, float, float, float]] = {
    "故宫": (116.3925, 39.9125, 116.4015, 39.9245),
    "天安门广场": (116.3905, 39.8990, 116.3955, 39.9065),
    "景山公园": (116.3935, 39.9258, 116.3990, 39.9310),
    "天坛公园": (116.4025, 39.8735, 116.4170, 39.8865),
    "地坛公园": (116.4095, 39.9505, 116.4170, 39.9570),
    "龙潭公园": (116.4335, 39.8720, 116.4420, 39.8820),
}
"""Parks and palaces (lon_min, lat_min, lon_max, lat_max): no minor streets run through them."""


@dataclass(frozen=True)
class StreetSpec:
    """A 街道 of 东城区: 3-digit code, name, ascii slug and seed points (lon, lat) of its area."""

    code: str
    name: str
    slug: str
    seeds: tuple[tuple[float, float], ...]

    @property
    def full_code(self) -> str:
        return DISTRICT_CODE + self.code

    @property
    def short_name(self) -> str:
        return self.name.removesuffix("街道")


STREETS: tuple[StreetSpec, ...] = (
    StreetSpec("001", "东华门街道", "donghuamen",
               ((116.3935, 39.9030), (116.3950, 39.9180), (116.4050, 39.9110), (116.4120, 39.9190),
                (116.4110, 39.9030))),
    StreetSpec("002", "景山街道", "jingshan", ((116.3990, 39.9290), (116.4080, 39.9290))),
    StreetSpec("003", "交道口街道", "jiaodaokou", ((116.4000, 39.9370), (116.4010, 39.9450))),
    StreetSpec("004", "安定门街道", "andingmen", ((116.4120, 39.9455), (116.4090, 39.9420))),
    StreetSpec("005", "北新桥街道", "beixinqiao", ((116.4230, 39.9445), (116.4310, 39.9450))),
    StreetSpec("006", "东四街道", "dongsi", ((116.4180, 39.9300), (116.4150, 39.9370))),
    StreetSpec("007", "朝阳门街道", "chaoyangmen", ((116.4260, 39.9230), (116.4230, 39.9175))),
    StreetSpec("008", "建国门街道", "jianguomen", ((116.4260, 39.9070), (116.4260, 39.9120))),
    StreetSpec("009", "东直门街道", "dongzhimen", ((116.4310, 39.9350), (116.4250, 39.9340))),
    StreetSpec("010", "和平里街道", "hepingli",
               ((116.4100, 39.9560), (116.4150, 39.9680), (116.4250, 39.9580))),
    StreetSpec("011", "前门街道", "qianmen", ((116.4020, 39.8950),)),
    StreetSpec("012", "崇文门外街道", "chongwenmenwai", ((116.4150, 39.8960),)),
    StreetSpec("013", "东花市街道", "donghuashi", ((116.4320, 39.8960), (116.4410, 39.8960))),
    StreetSpec("014", "龙潭街道", "longtan", ((116.4380, 39.8830), (116.4370, 39.8730))),
    StreetSpec("015", "体育馆路街道", "tiyuguanlu", ((116.4230, 39.8850), (116.4240, 39.8780))),
    StreetSpec("016", "天坛街道", "tiantan",
               ((116.4000, 39.8850), (116.4090, 39.8780), (116.4160, 39.8720), (116.4010, 39.8730))),
    StreetSpec("017", "永定门外街道", "yongdingmenwai", ((116.3900, 39.8610), (116.4050, 39.8610))),
)

DEPARTMENT_NAMES: dict[str, tuple[str, str]] = {
    "water": ("water", "北京市自来水集团东城分公司"),
    "drainage": ("drainage", "北京城市排水集团东城管网分公司"),
    "power": ("power", "国网北京城区供电公司"),
    "streetlight": ("streetlight", "北京市城市照明管理中心东城管理所"),
    "telecom": ("telecom", "中国联通北京市东城区分公司"),
    "gas": ("gas", "北京市燃气集团第一分公司"),
    "heating": ("heating", "北京市热力集团东城供热分公司"),
    "public_security": ("police", "北京市公安局东城分局"),
    "fire": ("fire", "北京市东城区消防救援支队"),
    "traffic": ("traffic", "北京市公安局公安交通管理局东城交通支队"),
    "roads": ("roads", "东城区城市道路养护管理中心"),
    "sanitation": ("sanitation", "东城区环境卫生服务中心"),
    "greening": ("greening", "东城区园林绿化局"),
    "law_enforcement": ("law_enforcement", "东城区城市管理综合行政执法局"),
    "housing": ("housing", "东城区住房和城市建设委员会"),
    "environment": ("environment", "北京市东城区生态环境局"),
    "water_affairs": ("water_affairs", "东城区水务局"),
    "market": ("market", "东城区市场监督管理局"),
    "civil_affairs": ("civil_affairs", "东城区民政局"),
}
"""dept_type -> (department code, name) of the district-wide department of that type."""

EXTRA_DEPARTMENTS: tuple[dict[str, Any], ...] = (
    {"code": "wangfujing_office", "name": "东城区王府井地区建设管理办公室", "type": "sanitation",
     "street_code": DISTRICT_CODE + "001"},
    {"code": "tiantan_park", "name": "北京市天坛公园管理处", "type": "greening",
     "street_code": DISTRICT_CODE + "016"},
)
"""Departments with a specific area (see the responsibility overrides)."""

# Components (部件) placed along roads: class key -> (spacing on main roads m, on minor roads m,
# lateral offset from the centre line m). 0 = none on that kind of road.
COMPONENT_LAYOUT: dict[str, tuple[float, float, float]] = {
    "C0118": (130.0, 320.0, 9.0),     # 路灯
    "C0402": (160.0, 0.0, 7.0),       # 行道树
    "C0305": (320.0, 700.0, 6.0),     # 垃圾箱
    "manhole": (170.0, 320.0, 3.5),   # 井盖 (mixed kinds below)
    "C0113": (520.0, 650.0, 5.0),     # 消防设施 (消火栓)
    "C0209": (420.0, 0.0, 8.0),       # 交通标志牌
    "C0203": (800.0, 0.0, 10.0),      # 公交站亭
    "C0211": (650.0, 0.0, 1.5),       # 交通护栏
    "C0301": (0.0, 900.0, 5.0),       # 公共厕所
    "C0213": (900.0, 1000.0, 6.5),    # 路名牌
    "C0121": (1200.0, 0.0, 8.5),      # 报刊亭
}
MANHOLE_KINDS: tuple[tuple[str, float], ...] = (
    ("C0101", 0.18), ("C0102", 0.24), ("C0103", 0.18), ("C0104", 0.10), ("C0105", 0.10),
    ("C0107", 0.08), ("C0111", 0.06), ("C0110", 0.03), ("C0106", 0.03),
)

CAMERA_SITES: tuple[tuple[str, float, float], ...] = (
    ("东单路口", LON_DONGDAN, LAT_CHANGAN),
    ("王府井南口", LON_WANGFUJING, LAT_CHANGAN),
    ("南河沿路口", LON_HEYAN, LAT_CHANGAN),
    ("灯市口路口", LON_WANGFUJING, LAT_DENGSHIKOU),
    ("东四路口", LON_DONGDAN, LAT_WUSI),
    ("美术馆路口", LON_HEYAN, LAT_WUSI),
    ("张自忠路口", LON_DONGDAN, LAT_PINGAN),
    ("宽街路口", LON_HEYAN, LAT_PINGAN),
    ("北新桥路口", LON_DONGDAN, LAT_JIAODAOKOU),
    ("交道口路口", LON_HEYAN, LAT_JIAODAOKOU),
    ("安定门桥", LON_HEYAN, LAT_ERHUAN_N),
    ("雍和宫桥", LON_DONGDAN, LAT_ERHUAN_N),
    ("东直门桥", LON_ERHUAN_N, LAT_JIAODAOKOU),
    ("朝阳门桥", LON_ERHUAN_N, LAT_WUSI),
    ("建国门桥", LON_ERHUAN_N, LAT_CHANGAN),
    ("崇文门路口", LON_DONGDAN, LAT_QIANSANMEN),
    ("前门东路口", LON_QIANMEN, LAT_QIANSANMEN),
    ("珠市口路口", LON_QIANMEN, LAT_LIANGGUANG),
    ("磁器口路口", LON_DONGDAN, LAT_LIANGGUANG),
    ("天桥路口", LON_QIANMEN, LAT_TIANTAN),
    ("天坛东门路口", LON_DONGDAN, LAT_TIYUGUAN),
    ("广渠门桥", LON_ERHUAN_S, LAT_LIANGGUANG),
    ("左安门桥", LON_ERHUAN_S, LAT_ERHUAN_S),
    ("永定门路口", LON_QIANMEN, LAT_ERHUAN_S),
    ("和平里北街路口", LON_HEYAN, LAT_HEPINGLI_B),
)
_CORNERS: tuple[tuple[str, float, float], ...] = (
    ("东北角", 1, 1), ("西南角", -1, -1), ("东南角", 1, -1), ("西北角", -1, 1),
)


# --- the road graph -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoadEdge:
    """A straight road piece between two graph nodes."""

    a: int
    b: int
    length_m: float
    name: str
    kind: str  # "main" | "minor"


class RoadGraph:
    """Roads as a graph for routing vehicles (路网): nodes are (lat, lon) crossings and ends.

    Edges are straight, so a vehicle moving along a path moves in straight lines between nodes.
    """

    def __init__(self, nodes: Sequence[tuple[float, float]], edges: Sequence[RoadEdge]) -> None:
        self.nodes: list[tuple[float, float]] = list(nodes)
        self.edges: list[RoadEdge] = list(edges)
        self.adjacency: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        for index, edge in enumerate(self.edges):
            self.adjacency[edge.a].append((edge.b, index))
            self.adjacency[edge.b].append((edge.a, index))
        self._tree = shapely.STRtree([Point(lon, lat) for lat, lon in self.nodes])

    def __len__(self) -> int:
        return len(self.nodes)

    def neighbours(self, node: int) -> list[int]:
        """Nodes one edge away."""
        return [other for other, _ in self.adjacency[node]]

    def nearest_node(self, lat: float, lon: float) -> int:
        """The node closest to a point."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ValueError(f"point must have finite lat/lon, got ({lat!r}, {lon!r})")
        return int(self._tree.nearest(Point(lon, lat)))

    def shortest_path(self, start: int, goal: int) -> list[int]:
        """Node ids from start to goal along roads (Dijkstra on metres); ValueError if unreachable."""
        for node in (start, goal):
            if not isinstance(node, int) or not 0 <= node < len(self.nodes):
                raise ValueError(f"unknown road node {node!r}")
        best = {start: 0.0}
        previous: dict[int, int] = {}
        queue = [(0.0, start)]
        while queue:
            dist, node = heapq.heappop(queue)
            if node == goal:
                break
            if dist > best.get(node, math.inf):
                continue
            for other, edge_index in self.adjacency[node]:
                candidate = dist + self.edges[edge_index].length_m
                if candidate < best.get(other, math.inf):
                    best[other] = candidate
                    previous[other] = node
                    heapq.heappush(queue, (candidate, other))
        if goal not in best:
            raise ValueError(f"road node {goal} cannot be reached from {start}")
        path = [goal]
        while path[-1] != start:
            path.append(previous[path[-1]])
        return path[::-1]

    def path_coords(self, path: Iterable[int]) -> list[tuple[float, float]]:
        """(lat, lon) of the nodes of a path."""
        return [self.nodes[node] for node in path]

    def path_length_m(self, path: Sequence[int]) -> float:
        """Length of a path in metres (straight lines between consecutive nodes)."""
        total = 0.0
        for a, b in zip(path, path[1:]):
            (lat1, lon1), (lat2, lon2) = self.nodes[a], self.nodes[b]
            x1, y1 = _xy(lon1, lat1)
            x2, y2 = _xy(lon2, lat2)
            total += math.hypot(x2 - x1, y2 - y1)
        return total

    def components(self) -> list[set[int]]:
        """Connected sets of nodes, largest first."""
        seen: set[int] = set()
        parts: list[set[int]] = []
        for start in range(len(self.nodes)):
            if start in seen:
                continue
            part = {start}
            stack = [start]
            while stack:
                node = stack.pop()
                for other, _ in self.adjacency[node]:
                    if other not in part:
                        part.add(other)
                        stack.append(other)
            seen |= part
            parts.append(part)
        return sorted(parts, key=len, reverse=True)

    def is_connected(self) -> bool:
        return len(self.components()) <= 1


def _road_pieces(lines: Sequence[tuple[LineString, str, str]]) -> tuple[list, list]:
    """Node metric road lines at their crossings: (node xy list, [(a, b, length, name, kind)])."""
    segments: list[tuple[LineString, str, str]] = []
    for line, name, kind in lines:
        coords = list(line.coords)
        for p, q in zip(coords, coords[1:]):
            if p != q:
                segments.append((LineString([p, q]), name, kind))
    geoms = [s[0] for s in segments]
    tree = shapely.STRtree(geoms)
    cuts: list[set[float]] = [{0.0, g.length} for g in geoms]
    left, right = tree.query(geoms, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist()):
        if i >= j:
            continue
        crossing = geoms[i].intersection(geoms[j])
        points = [crossing] if crossing.geom_type == "Point" else [
            g for g in getattr(crossing, "geoms", []) if g.geom_type == "Point"]
        if crossing.geom_type == "LineString":  # collinear overlap: cut at its ends
            points = [Point(c) for c in crossing.coords]
        for point in points:
            cuts[i].add(round(geoms[i].project(point), 3))
            cuts[j].add(round(geoms[j].project(point), 3))
    node_ids: dict[tuple[float, float], int] = {}
    nodes: list[tuple[float, float]] = []

    def node_at(x: float, y: float) -> int:
        key = (round(x, 1), round(y, 1))
        if key not in node_ids:
            node_ids[key] = len(nodes)
            nodes.append((x, y))
        return node_ids[key]

    edges = []
    for (geom, name, kind), positions in zip(segments, cuts):
        ordered = sorted(positions)
        for s, t in zip(ordered, ordered[1:]):
            if t - s < 0.5:
                continue
            p, q = geom.interpolate(s), geom.interpolate(t)
            a, b = node_at(p.x, p.y), node_at(q.x, q.y)
            if a != b:
                edges.append((a, b, t - s, name, kind))
    return nodes, edges


def road_graph_from_geojson(roads: dict[str, Any]) -> RoadGraph:
    """Build the routing graph of a roads FeatureCollection (LineStrings with name, kind)."""
    lines = []
    for feature in roads.get("features", []):
        geometry = shape(feature["geometry"])
        props = feature.get("properties") or {}
        parts = getattr(geometry, "geoms", [geometry])
        for part in parts:
            lines.append((to_metres(part), props.get("name", ""), props.get("kind", "minor")))
    nodes_xy, raw_edges = _road_pieces(lines)
    nodes = [(lat, lon) for lon, lat in (_lonlat(x, y) for x, y in nodes_xy)]
    edges = [RoadEdge(a, b, round(length, 2), name, kind) for a, b, length, name, kind in raw_edges]
    return RoadGraph(nodes, edges)


# --- the city -----------------------------------------------------------------------------------


@dataclass
class City:
    """The generated demo city. Lists hold plain dicts (JSON-ready); geometry is GeoJSON [lon, lat].

    ``center`` is (lat, lon); ``bounds`` is ((min_lat, min_lon), (max_lat, max_lon)).
    Treat a City as read-only: :func:`default_city` shares one instance.
    """

    seed: int
    district: dict[str, Any]
    streets: list[dict[str, Any]]
    communities: list[dict[str, Any]]
    grids: dict[str, Any]
    roads: dict[str, Any]
    departments: list[dict[str, Any]]
    responsibilities: list[dict[str, str]]
    inspectors: list[dict[str, Any]]
    duty_grids: list[dict[str, Any]]
    users: list[dict[str, Any]]
    components: list[dict[str, Any]]
    cameras: list[dict[str, Any]]
    center: tuple[float, float]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    parks: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- lookups ----------------------------------------------------------------------------
    @cached_property
    def _grid_features(self) -> list[dict[str, Any]]:
        return list(self.grids["features"])

    @cached_property
    def _grid_shapes(self) -> list[BaseGeometry]:
        return [shape(f["geometry"]) for f in self._grid_features]

    @cached_property
    def _grid_tree(self) -> shapely.STRtree:
        return shapely.STRtree(self._grid_shapes)

    @cached_property
    def _grid_by_code(self) -> dict[str, int]:
        return {f["properties"]["grid_code"]: i for i, f in enumerate(self._grid_features)}

    @cached_property
    def _road_lines(self) -> list[tuple[BaseGeometry, str]]:
        return [(to_metres(shape(f["geometry"])), f["properties"]["name"]) for f in self.roads["features"]]

    @cached_property
    def _road_tree(self) -> shapely.STRtree:
        return shapely.STRtree([line for line, _ in self._road_lines])

    @cached_property
    def _duty_inspector(self) -> dict[str, str]:
        return {code: d["inspector"] for d in self.duty_grids for code in d["grid_codes"]}

    @cached_property
    def _names(self) -> dict[str, str]:
        table = {s["code"]: s["name"] for s in self.streets}
        table.update({c["code"]: c["name"] for c in self.communities})
        return table

    @cached_property
    def _road_graph(self) -> RoadGraph:
        return road_graph_from_geojson(self.roads)

    def road_graph(self) -> RoadGraph:
        """The road network as a routing graph (cached)."""
        return self._road_graph

    def grid_codes(self) -> list[str]:
        return [f["properties"]["grid_code"] for f in self._grid_features]

    def grid_geometry(self, grid_code: str) -> BaseGeometry:
        """The lon/lat polygon of a unit grid; ValueError for an unknown code."""
        index = self._grid_by_code.get(grid_code)
        if index is None:
            raise ValueError(f"unknown grid code {grid_code!r}")
        return self._grid_shapes[index]

    def grid_at(self, lat: float, lon: float) -> str | None:
        """The code of the unit grid holding a point, or None outside the district."""
        hits = self._grid_tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return self._grid_features[int(hits.min())]["properties"]["grid_code"]

    def random_point_in_grid(self, grid_code: str, rng: random.Random) -> tuple[float, float]:
        """A uniformly random (lat, lon) inside a unit grid."""
        polygon = self.grid_geometry(grid_code)
        min_lon, min_lat, max_lon, max_lat = polygon.bounds
        for _ in range(200):
            lon = rng.uniform(min_lon, max_lon)
            lat = rng.uniform(min_lat, max_lat)
            if polygon.contains(Point(lon, lat)):
                return round(lat, 6), round(lon, 6)
        point = polygon.representative_point()
        return round(point.y, 6), round(point.x, 6)

    def nearest_road(self, lat: float, lon: float) -> tuple[str, float]:
        """Name of the closest road and the distance to it in metres."""
        x, y = _xy(lon, lat)
        index = int(self._road_tree.nearest(Point(x, y)))
        line, name = self._road_lines[index]
        return name, line.distance(Point(x, y))

    def place_name(self, lat: float, lon: float) -> str:
        """A short location such as "史家胡同北侧" (road and side)."""
        x, y = _xy(lon, lat)
        index = int(self._road_tree.nearest(Point(x, y)))
        line, name = self._road_lines[index]
        nearest = line.interpolate(line.project(Point(x, y)))
        dx, dy = x - nearest.x, y - nearest.y
        if max(abs(dx), abs(dy)) < 2.0:
            return name
        if abs(dx) > abs(dy):
            side = "东侧" if dx > 0 else "西侧"
        else:
            side = "北侧" if dy > 0 else "南侧"
        return name + side

    def address(self, lat: float, lon: float) -> str:
        """A full address: 东城区XX街道XX社区 + place name."""
        code = self.grid_at(lat, lon)
        place = self.place_name(lat, lon)
        if code is None:
            return place
        return f"{DISTRICT_NAME}{self._names[code[:9]]}{self._names[code[:12]]}{place}"

    def duty_inspector(self, grid_code: str) -> str:
        """Username of the inspector (监督员) whose duty grid holds the unit grid."""
        try:
            return self._duty_inspector[grid_code]
        except KeyError:
            raise ValueError(f"unknown grid code {grid_code!r}") from None

    def department(self, code: str) -> dict[str, Any]:
        for dept in self.departments:
            if dept["code"] == code:
                return dept
        raise ValueError(f"unknown department code {code!r}")

    def users_with_role(self, role: str) -> list[dict[str, Any]]:
        return [u for u in self.users if u["role"] == role]


# --- building blocks ---------------------------------------------------------------------------


def _explode(geometry: BaseGeometry) -> list[Polygon]:
    if geometry.is_empty:
        return []
    if isinstance(geometry, Polygon):
        return [geometry]
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def _main_blocks(district: Polygon, main_lines: list[LineString]) -> list[Polygon]:
    """Faces of the district cut by the main roads."""
    linework = shapely.union_all([district.exterior] + [line.intersection(district) for line in main_lines])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
    return [f for f in faces if f.area > 1.0 and district.contains(f.representative_point())]


def _lattice(block: Polygon) -> tuple[list[Polygon], list[LineString]]:
    """Cut a block by a lattice of minor streets: (cells, minor street lines)."""
    x0, y0, x1, y1 = block.bounds
    nx = max(1, math.ceil((x1 - x0) / LATTICE_SPACING_M))
    ny = max(1, math.ceil((y1 - y0) / LATTICE_SPACING_M))
    xs = [x0 + (x1 - x0) * i / nx for i in range(nx + 1)]
    ys = [y0 + (y1 - y0) * j / ny for j in range(ny + 1)]
    cells: list[Polygon] = []
    for i in range(nx):
        for j in range(ny):
            cells.extend(_explode(block.intersection(box(xs[i], ys[j], xs[i + 1], ys[j + 1]))))
    lines: list[LineString] = []
    for x in xs[1:-1]:
        lines.extend(_lines(block.intersection(LineString([(x, y0 - 1), (x, y1 + 1)]))))
    for y in ys[1:-1]:
        lines.extend(_lines(block.intersection(LineString([(x0 - 1, y), (x1 + 1, y)]))))
    return cells, lines


def _lines(geometry: BaseGeometry) -> list[LineString]:
    if geometry.is_empty:
        return []
    if isinstance(geometry, LineString):
        return [geometry]
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, LineString) and g.length > 0]


def _shared_lengths(pieces: list[Polygon]) -> dict[int, dict[int, float]]:
    """Length of the border shared by each pair of adjacent pieces (> 1 m)."""
    tree = shapely.STRtree(pieces)
    left, right = tree.query(pieces, predicate="intersects")
    shared: dict[int, dict[int, float]] = {i: {} for i in range(len(pieces))}
    boundaries = [p.boundary for p in pieces]
    for i, j in zip(left.tolist(), right.tolist()):
        if i >= j:
            continue
        length = boundaries[i].intersection(boundaries[j]).length
        if length > 1.0:
            shared[i][j] = length
            shared[j][i] = length
    return shared


def _merge_small(pieces: list[Polygon], groups: list[int]) -> tuple[list[Polygon], list[int]]:
    """Merge pieces under MIN_GRID_M2 into a neighbour (same block first, then the longest border)."""
    shared = _shared_lengths(pieces)
    geoms: dict[int, Polygon] = dict(enumerate(pieces))
    while True:
        small = [i for i, g in geoms.items() if g.area < MIN_GRID_M2 and shared[i]]
        if not small:
            break
        i = min(small, key=lambda k: (geoms[k].area, k))
        area = geoms[i].area

        def preference(j: int) -> tuple:
            fits = area + geoms[j].area <= MAX_GRID_M2
            return (groups[j] == groups[i], fits, shared[i][j], -j)

        j = max(shared[i], key=preference)
        geoms[j] = _as_polygon(geoms[j].union(geoms[i]))
        for k, length in shared.pop(i).items():
            shared[k].pop(i, None)
            if k != j:
                shared[j][k] = shared[j].get(k, 0.0) + length
                shared[k][j] = shared[k].get(j, 0.0) + length
        del geoms[i]
    order = sorted(geoms)
    return [geoms[i] for i in order], [groups[i] for i in order]


def _as_polygon(geometry: BaseGeometry) -> Polygon:
    parts = _explode(geometry)
    if len(parts) == 1:
        return parts[0]
    # Adjacent pieces always share an edge; tiny slivers from float noise are dropped.
    return max(parts, key=lambda p: p.area)


def _split_large(pieces: list[Polygon], groups: list[int]) -> tuple[list[Polygon], list[int], bool]:
    """Halve pieces over MAX_GRID_M2 across their longer side, at the line that halves the area."""
    out: list[Polygon] = []
    out_groups: list[int] = []
    changed = False
    for piece, group in zip(pieces, groups):
        halves = _halve(piece) if piece.area > MAX_GRID_M2 else None
        if halves is None:
            out.append(piece)
            out_groups.append(group)
            continue
        changed = True
        out.extend(halves)
        out_groups.extend([group] * len(halves))
    return out, out_groups, changed


def _halve(piece: Polygon) -> list[Polygon] | None:
    x0, y0, x1, y1 = piece.bounds
    axes = ["x", "y"] if (x1 - x0) >= (y1 - y0) else ["y", "x"]
    for axis in axes:
        lo, hi = (x0, x1) if axis == "x" else (y0, y1)
        low_box = (lambda c: box(x0 - 1, y0 - 1, c, y1 + 1)) if axis == "x" else \
            (lambda c: box(x0 - 1, y0 - 1, x1 + 1, c))
        a, b = lo, hi
        for _ in range(40):
            mid = (a + b) / 2
            if piece.intersection(low_box(mid)).area < piece.area / 2:
                a = mid
            else:
                b = mid
        cut = round((a + b) / 2, 2)
        first = _explode(piece.intersection(low_box(cut)))
        second = _explode(piece.difference(low_box(cut)))
        if len(first) == 1 and len(second) == 1:
            return [first[0], second[0]]
    return None


def _components(items: Iterable[int], neighbours: dict[int, dict[int, float]]) -> list[list[int]]:
    """Connected groups of items (adjacency restricted to the items), largest first."""
    remaining = set(items)
    parts: list[list[int]] = []
    while remaining:
        start = min(remaining)
        part = [start]
        remaining.discard(start)
        stack = [start]
        while stack:
            node = stack.pop()
            for other in neighbours[node]:
                if other in remaining:
                    remaining.discard(other)
                    part.append(other)
                    stack.append(other)
        parts.append(sorted(part))
    return sorted(parts, key=lambda p: (-len(p), p[0]))


def _make_contiguous(labels: dict[int, Any], neighbours: dict[int, dict[int, float]]) -> None:
    """Move every detached part of a label's area to the neighbouring label it borders most."""
    for _ in range(50):
        moved = False
        by_label: dict[Any, list[int]] = {}
        for item, label in sorted(labels.items()):
            by_label.setdefault(label, []).append(item)
        for label, items in sorted(by_label.items()):
            for part in _components(items, neighbours)[1:]:
                border: dict[Any, float] = {}
                for item in part:
                    for other, length in neighbours[item].items():
                        if labels[other] != label:
                            border[labels[other]] = border.get(labels[other], 0.0) + length
                if border:
                    target = max(sorted(border), key=lambda k: border[k])
                    for item in part:
                        labels[item] = target
                    moved = True
        if not moved:
            return


def _bisect(items: list[int], parts: int, centres: dict[int, tuple[float, float]],
            neighbours: dict[int, dict[int, float]]) -> list[list[int]]:
    """Split items into `parts` groups of near-equal size, each connected where possible."""
    if parts <= 1 or len(items) <= 1:
        return [sorted(items)]
    first_parts = parts // 2
    n_first = round(len(items) * first_parts / parts)
    angles = [math.pi * k / 12 for k in range(12)]

    def spread(angle: float) -> float:
        values = [centres[i][0] * math.cos(angle) + centres[i][1] * math.sin(angle) for i in items]
        return max(values) - min(values)

    best: tuple[int, list[int], list[int]] | None = None
    for angle in sorted(angles, key=lambda a: -spread(a)):
        ordered = sorted(items, key=lambda i: (centres[i][0] * math.cos(angle)
                                               + centres[i][1] * math.sin(angle), i))
        a, b = ordered[:n_first], ordered[n_first:]
        score = len(_components(a, neighbours)) + len(_components(b, neighbours))
        if best is None or score < best[0]:
            best = (score, a, b)
        if score == 2:
            break
    assert best is not None
    _, a, b = best
    return _bisect(a, first_parts, centres, neighbours) + _bisect(b, parts - first_parts, centres, neighbours)


def _reading_order(items: list[int], centres: dict[int, tuple[float, float]], row_tolerance: float) -> list[int]:
    """Items numbered from north to south in rows, west to east within a row."""
    by_north = sorted(items, key=lambda i: (-centres[i][1], centres[i][0], i))
    rows: list[list[int]] = []
    anchor = math.inf
    for item in by_north:
        y = centres[item][1]
        if not rows or anchor - y > row_tolerance:
            rows.append([])
            anchor = y
        rows[-1].append(item)
    return [item for row in rows for item in sorted(row, key=lambda i: (centres[i][0], i))]


# --- build ---------------------------------------------------------------------------------------


def build_city(seed: int = DEFAULT_SEED, catalog: Catalog | None = None) -> City:
    """Generate the demo city of 北京市东城区. A pure function of ``seed`` (and the catalog).

    The geometry (district, streets, communities, grids, roads) does not depend on the seed;
    names of people, community name order and the components do.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    catalog = catalog or default_catalog()
    rng = random.Random(seed)

    district_ll = Polygon(DISTRICT_OUTLINE)
    district = to_metres(district_ll)
    main_lines = [(to_metres(LineString(road.points)), road.name) for road in MAIN_ROADS]
    parks_m = {name: to_metres(box(*bounds)) for name, bounds in PARKS.items()}
    park_union = shapely.union_all(list(parks_m.values())).buffer(10.0)

    # 1. blocks between main roads, 2. lattice cells and minor streets inside each block
    blocks = _main_blocks(district, [line for line, _ in main_lines])
    pieces: list[Polygon] = []
    groups: list[int] = []
    minor_lines: list[LineString] = []
    for index, block in enumerate(blocks):
        cells, lines = _lattice(block)
        pieces.extend(cells)
        groups.extend([index] * len(cells))
        minor_lines.extend(lines)

    # 3. grids of 0.05-0.15 km²
    for _ in range(6):
        pieces, groups = _merge_small(pieces, groups)
        pieces, groups, changed = _split_large(pieces, groups)
        if not changed:
            break
    pieces = [shapely.set_precision(p, 0.001) for p in pieces]
    neighbours = _shared_lengths(pieces)
    centres = {i: (p.centroid.x, p.centroid.y) for i, p in enumerate(pieces)}

    # 4. streets: nearest seed point, then contiguous
    seeds = [(spec_index, _xy(lon, lat)) for spec_index, spec in enumerate(STREETS) for lon, lat in spec.seeds]
    street_of: dict[int, int] = {}
    for i, piece in enumerate(pieces):
        point = piece.representative_point()
        street_of[i] = min(seeds, key=lambda s: (math.hypot(s[1][0] - point.x, s[1][1] - point.y), s[0]))[0]
    _make_contiguous(street_of, neighbours)

    streets_out: list[dict[str, Any]] = []
    communities_out: list[dict[str, Any]] = []
    grid_features: list[dict[str, Any]] = []
    duty_out: list[dict[str, Any]] = []
    inspectors: list[dict[str, Any]] = []
    grid_poly_m: dict[str, Polygon] = {}
    for spec_index, spec in enumerate(STREETS):
        members = sorted(i for i, s in street_of.items() if s == spec_index)
        if len(members) < 6:  # the fixed layout guarantees more; a changed layout must too
            raise RuntimeError(f"street {spec.name} got only {len(members)} unit grids (at least 6 needed)")
        street_geom = shapely.union_all([pieces[i] for i in members])
        streets_out.append({"code": spec.full_code, "name": spec.name, "slug": spec.slug,
                            "geometry": _geojson(to_lonlat(street_geom))})

        # communities: 4-8 per street by recursive bisection, contiguous
        n_comm = max(4, min(8, round(len(members) / 6)))
        comm_label: dict[int, int] = {}
        for label, part in enumerate(_bisect(members, n_comm, centres, neighbours)):
            for item in part:
                comm_label[item] = label
        local = {i: neighbours[i] for i in members}
        local = {i: {j: v for j, v in adj.items() if j in comm_label} for i, adj in local.items()}
        _make_contiguous(comm_label, local)
        parts = sorted({label for label in comm_label.values()})
        comm_items = {label: [i for i in members if comm_label[i] == label] for label in parts}
        comm_centres = {label: shapely.union_all([pieces[i] for i in items]).centroid.coords[0]
                        for label, items in comm_items.items()}
        comm_order = _reading_order(parts, comm_centres, row_tolerance=350.0)
        pool = list(names.COMMUNITY_NAMES[spec.code])
        rng.shuffle(pool)
        grid_code_of: dict[int, str] = {}
        for seq, label in enumerate(comm_order, start=1):
            comm_code = spec.full_code + f"{seq:03d}"
            comm_name = pool[seq - 1] + "社区"
            items = comm_items[label]
            communities_out.append({
                "code": comm_code, "name": comm_name, "street_code": spec.full_code,
                "geometry": _geojson(to_lonlat(shapely.union_all([pieces[i] for i in items]))),
            })
            for number, item in enumerate(_reading_order(items, centres, row_tolerance=150.0), start=1):
                grid_code = f"{comm_code}{number:03d}"
                grid_code_of[item] = grid_code
                grid_poly_m[grid_code] = pieces[item]
                grid_features.append({
                    "type": "Feature",
                    "properties": {"grid_code": grid_code, "name": f"{comm_name}第{number}网格",
                                   "community_code": comm_code, "street_code": spec.full_code,
                                   "area_m2": round(pieces[item].area, 1)},
                    "geometry": _geojson(to_lonlat(pieces[item])),
                })

        # duty grids (责任网格): 6-12 adjacent grids per inspector
        n = len(members)
        low, high = math.ceil(n / 12), n // 6
        n_duty = max(low, min(high, round(n / 9)))
        duty_parts = _bisect(members, n_duty, centres, neighbours)
        duty_centres = {k: shapely.union_all([pieces[i] for i in part]).centroid.coords[0]
                        for k, part in enumerate(duty_parts)}
        for number, k in enumerate(_reading_order(list(range(len(duty_parts))), duty_centres, 400.0), start=1):
            username = f"insp{len(inspectors) + 1:03d}"
            code = f"ZR{spec.full_code}{number:02d}"
            display = names.person_name(rng)
            inspectors.append({"username": username, "display_name": display, "duty_grid_code": code,
                               "street_code": spec.full_code})
            duty_out.append({"code": code, "name": f"{spec.short_name}第{number}责任网格",
                             "inspector": username, "street_code": spec.full_code,
                             "grid_codes": sorted(grid_code_of[i] for i in duty_parts[k])})

    grid_features.sort(key=lambda f: f["properties"]["grid_code"])
    departments = _departments(catalog)
    responsibilities = _responsibilities(catalog, departments, grid_poly_m, communities_out)

    # roads: main roads + minor streets outside parks, kept if connected to the network
    road_lines: list[tuple[LineString, str, str]] = []
    for line, name in main_lines:
        for part in _lines(line.intersection(district)):
            road_lines.append((part, name, "main"))
    road_lines.extend(_minor_roads(minor_lines, park_union, rng))
    road_lines = _connected_roads(road_lines)
    roads_fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name, "kind": kind},
         "geometry": _geojson(to_lonlat(line))}
        for line, name, kind in road_lines]}

    components = _components_along(road_lines, grid_poly_m, catalog, departments, responsibilities, rng)
    cameras = _cameras(district)
    users = _users(departments, inspectors, rng)

    min_lon, min_lat, max_lon, max_lat = district_ll.bounds
    centroid = district_ll.centroid
    return City(
        seed=seed,
        district={"code": DISTRICT_CODE, "name": DISTRICT_NAME, "city": CITY_NAME,
                  "boundary": _geojson(district_ll), "area_m2": round(district.area, 1)},
        streets=streets_out,
        communities=communities_out,
        grids={"type": "FeatureCollection", "features": grid_features},
        roads=roads_fc,
        departments=departments,
        responsibilities=responsibilities,
        inspectors=inspectors,
        duty_grids=duty_out,
        users=users,
        components=components,
        cameras=cameras,
        center=(round(centroid.y, 6), round(centroid.x, 6)),
        bounds=((min_lat, min_lon), (max_lat, max_lon)),
        parks={name: _geojson(box(*bounds)) for name, bounds in PARKS.items()},
    )


@cache
def default_city() -> City:
    """The city of DEFAULT_SEED, built once per process (do not mutate it)."""
    return build_city(DEFAULT_SEED)


def _minor_roads(lines: list[LineString], parks: BaseGeometry, rng: random.Random) -> list[tuple[LineString, str, str]]:
    """Minor streets (胡同): lattice lines outside parks, at least 100 m long, with names."""
    kept: list[LineString] = []
    for line in lines:
        for part in _lines(line.difference(parks)):
            if part.length >= 100.0:
                kept.append(part)
    kept.sort(key=lambda l: (-round(l.centroid.y, 1), round(l.centroid.x, 1)))
    north = list(names.HUTONG_NORTH)
    south = list(names.HUTONG_SOUTH)
    rng.shuffle(north)
    rng.shuffle(south)
    used = {"north": 0, "south": 0}
    suffixes = ("", "东段", "西段", "南段", "北段", "中段")
    out = []
    qianmen_y = _xy(LON_QIANMEN, LAT_QIANSANMEN)[1]
    for line in kept:
        region, pool = ("north", north) if line.centroid.y > qianmen_y else ("south", south)
        k = used[region]
        used[region] += 1
        name = pool[k % len(pool)] + suffixes[min(k // len(pool), len(suffixes) - 1)]
        out.append((line, name, "minor"))
    return out


def _connected_roads(lines: list[tuple[LineString, str, str]]) -> list[tuple[LineString, str, str]]:
    """Keep the road lines of the largest connected network."""
    nodes, edges = _road_pieces(lines)
    parent = list(range(len(nodes)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b, *_ in edges:
        parent[find(a)] = find(b)
    sizes: dict[int, int] = {}
    for k in range(len(nodes)):
        sizes[find(k)] = sizes.get(find(k), 0) + 1
    main = max(sizes, key=lambda r: (sizes[r], -r))
    keep_points = shapely.points([nodes[k] for k in range(len(nodes)) if find(k) == main])
    tree = shapely.STRtree(keep_points)
    out = []
    for line, name, kind in lines:
        start = Point(line.coords[0])
        if len(tree.query(start.buffer(0.2), predicate="intersects")):
            out.append((line, name, kind))
    return out


def _departments(catalog: Catalog) -> list[dict[str, Any]]:
    departments: list[dict[str, Any]] = []
    for dept_type in catalog.dept_types:
        if dept_type == "street_office":
            continue
        code, name = DEPARTMENT_NAMES.get(dept_type, (dept_type, f"东城区{catalog.dept_types[dept_type]}部门"))
        departments.append({"code": code, "name": name, "type": dept_type, "street_code": None})
    for spec in STREETS:
        departments.append({"code": f"jd_{spec.slug}", "name": f"{spec.name}办事处", "type": "street_office",
                            "street_code": spec.full_code})
    departments.extend(dict(d) for d in EXTRA_DEPARTMENTS)
    return departments


def _responsibilities(catalog: Catalog, departments: list[dict[str, Any]], grids_m: dict[str, Polygon],
                      communities: list[dict[str, Any]]) -> list[dict[str, str]]:
    """责任划分 rules. Matching: longest grid prefix, then longest class prefix (domain.grid)."""
    by_type = {d["type"]: d["code"] for d in departments if d["street_code"] is None}
    rules: list[dict[str, str]] = []
    for case_class in catalog.classes:
        if case_class.dept_type == "street_office":
            continue  # handled per street below
        rules.append({"department_code": by_type[case_class.dept_type], "grid_prefix": DISTRICT_CODE,
                      "class_prefix": case_class.key})
    street_only = [c.key for c in catalog.classes if c.dept_type == "street_office"]
    for spec in STREETS:
        office = f"jd_{spec.slug}"
        rules.append({"department_code": office, "grid_prefix": spec.full_code, "class_prefix": "E05"})
        for key in street_only:
            if not key.startswith("E05"):
                rules.append({"department_code": office, "grid_prefix": spec.full_code, "class_prefix": key})
        # Overrides: traffic police keep 机动车乱停放 and 黑车拉客 in every street.
        for key in ("E0505", "E0509"):
            if key in catalog and "traffic" in by_type:
                rules.append({"department_code": by_type["traffic"], "grid_prefix": spec.full_code,
                              "class_prefix": key})
    # Override: 王府井 pedestrian area — the 王府井 office keeps 市容环境 and 市容设施.
    wangfujing = _community_at(communities, LON_WANGFUJING + 0.0004, LAT_DONGHUAMEN + 0.0015)
    if wangfujing:
        for prefix in ("E01", "C03", "E02"):
            rules.append({"department_code": "wangfujing_office", "grid_prefix": wangfujing,
                          "class_prefix": prefix})
    # Override: grids inside 天坛公园 — the park administration keeps 园林绿化 and 市容环境.
    park = to_metres(box(*PARKS["天坛公园"]))
    tiantan_street = DISTRICT_CODE + "016"
    for code, polygon in sorted(grids_m.items()):
        if code.startswith(tiantan_street) and polygon.intersection(park).area > 0.5 * polygon.area:
            for prefix in ("C04", "E0106", "E0102", "E0104"):
                rules.append({"department_code": "tiantan_park", "grid_prefix": code, "class_prefix": prefix})
    return rules


def _community_at(communities: list[dict[str, Any]], lon: float, lat: float) -> str | None:
    point = Point(lon, lat)
    for community in communities:
        if shape(community["geometry"]).contains(point):
            return community["code"]
    return None


def _components_along(roads: list[tuple[LineString, str, str]], grids_m: dict[str, Polygon], catalog: Catalog,
                      departments: list[dict[str, Any]], rules: list[dict[str, str]],
                      rng: random.Random) -> list[dict[str, Any]]:
    """部件 placed along the roads at regular spacing, alternating sides."""
    codes = sorted(grids_m)
    tree = shapely.STRtree([grids_m[c] for c in codes])
    dept_index = {d["code"]: k for k, d in enumerate(departments)}
    resolver = Responsibilities([ResponsibilityRule(dept_index[r["department_code"]], r["grid_prefix"],
                                                    r["class_prefix"]) for r in rules])
    manhole_keys = [k for k, _ in MANHOLE_KINDS if k in catalog]
    manhole_weights = [w for k, w in MANHOLE_KINDS if k in catalog]
    placed: list[tuple[str, float, float]] = []
    for line, _name, kind in roads:
        length = line.length
        (x1, y1), (x2, y2) = line.coords[0], line.coords[-1]
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        for key, (main_gap, minor_gap, offset) in COMPONENT_LAYOUT.items():
            gap = main_gap if kind == "main" else minor_gap
            if gap <= 0 or (key != "manhole" and key not in catalog):
                continue
            side = 1 if rng.random() < 0.5 else -1
            distance = rng.uniform(0.2, 0.8) * gap
            while distance < length - 5.0:
                lateral = offset if kind == "main" else min(offset, 4.0)
                lateral += rng.uniform(-0.5, 0.5)
                x = x1 + ux * distance - uy * lateral * side
                y = y1 + uy * distance + ux * lateral * side
                class_key = rng.choices(manhole_keys, manhole_weights)[0] if key == "manhole" else key
                placed.append((class_key, x, y))
                side = -side
                distance += gap * rng.uniform(0.85, 1.15)
    points = shapely.points(np.array([(x, y) for _, x, y in placed]))
    point_idx, tree_idx = tree.query(points, predicate="intersects")
    first = np.full(len(placed), len(codes), dtype=np.int64)
    np.minimum.at(first, point_idx, tree_idx)
    sequence: dict[str, int] = {}
    components = []
    for (class_key, x, y), grid_index in zip(placed, first.tolist()):
        if grid_index >= len(codes):
            continue  # fell outside the district
        grid_code = codes[grid_index]
        case_class = catalog.get(class_key)
        sequence[class_key] = sequence.get(class_key, 0) + 1
        roll = rng.random()
        lost_share = 0.015 if case_class.name.endswith("井盖") or class_key == "C0104" else 0.003
        status = "丢失" if roll < lost_share else "破损" if roll < lost_share + 0.04 else "完好"
        dept = resolver.suggest(grid_code, class_key)
        lon, lat = _lonlat(x, y)
        components.append({
            "code": f"{DISTRICT_CODE}{case_class.code}{sequence[class_key]:06d}",
            "class_code": class_key, "name": case_class.name, "lat": lat, "lon": lon,
            "grid_code": grid_code, "status": status,
            "dept_code": departments[dept]["code"] if dept is not None else None,
        })
    components.sort(key=lambda c: c["code"])
    return components


def _cameras(district: Polygon) -> list[dict[str, Any]]:
    cameras = []
    for k, (site, lon, lat) in enumerate(CAMERA_SITES):
        corner, sx, sy = _CORNERS[k % len(_CORNERS)]
        x, y = _xy(lon, lat)
        x, y = x + 14.0 * sx, y + 14.0 * sy
        if not district.contains(Point(x, y)):
            continue
        lon_c, lat_c = _lonlat(x, y)
        cameras.append({"code": f"cam{k + 1:02d}", "name": f"{site}{corner}", "lat": lat_c, "lon": lon_c})
    return cameras


def _users(departments: list[dict[str, Any]], inspectors: list[dict[str, Any]],
           rng: random.Random) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []

    def add(username: str, role: str, display: str, department_code: str | None = None) -> None:
        users.append({"username": username, "password": DEMO_PASSWORD, "role": role,
                      "department_code": department_code, "display_name": display})

    for inspector in inspectors:
        add(inspector["username"], "inspector", inspector["display_name"])
    add("operator1", "operator", names.person_name(rng) + "（受理员）")
    add("operator2", "operator", names.person_name(rng) + "（受理员）")
    add("supervisor", "supervisor", names.person_name(rng) + "（值班长）")
    add("dispatcher", "dispatcher", names.person_name(rng) + "（派遣员）")
    for dept in departments:
        add(f"dept_{dept['code']}", "department", dept["name"], dept["code"])
    add("leader", "leader", names.person_name(rng) + "（带班领导）")
    add("admin", "admin", "系统管理员")
    return users
