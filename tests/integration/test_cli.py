"""The command line: catalog check/load, grid import, audit verify (exit codes users rely on)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import update

from backend.domain.catalog import default_catalog
from backend.store import models as m
from tests import support
from tests.conftest import new_case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYWALL_DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'citywall.db'}",
           "REDIS_URL": "redis://127.0.0.1:6379/2", "CITYWALL_SECRET_KEY": "test-secret", "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_catalog_check_refuses_a_bad_file_and_load_installs_a_good_one(tmp_path):
    data = default_catalog().to_dict()
    bad = json.loads(json.dumps(data))
    bad["classes"][0]["major"] = "77"
    (tmp_path / "bad.json").write_text(json.dumps(bad, ensure_ascii=False))
    r = cli(tmp_path, "catalog", "check", str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "refused" in r.stderr
    good = json.loads(json.dumps(data))
    good["classes"][0]["name"] = "供水井盖(本市)"
    (tmp_path / "good.json").write_text(json.dumps(good, ensure_ascii=False))
    r = cli(tmp_path, "catalog", "load", str(tmp_path / "good.json"))
    assert r.returncode == 0, r.stderr
    from backend.services.context import Context

    ctx = Context.from_config(support.make_config(tmp_path))
    assert ctx.catalog.classes[0].name == "供水井盖(本市)"


def test_grid_import_and_audit_verify(tmp_path, sqlite_store):
    # the fixture store lives in tmp_path/citywall.db, which the CLI opens too
    (tmp_path / "grids.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"grid_code": "12"}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}))
    r = cli(tmp_path, "grids", "import", str(tmp_path / "grids.geojson"))
    assert r.returncode == 2 and "refused" in r.stderr
    new_case()
    r = cli(tmp_path, "audit", "verify")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    with sqlite_store.engine.begin() as conn:
        conn.execute(update(m.Event.__table__).values(payload="{}"))
    r = cli(tmp_path, "audit", "verify")
    assert r.returncode == 1 and json.loads(r.stdout)["broken_event_id"] == 1
