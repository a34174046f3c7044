"""Command line (命令行): migrate, seed, load the catalog, import grids, verify the audit chain, run.

    python -m backend.cli migrate
    python -m backend.cli seed [--history-days N]
    python -m backend.cli catalog check FILE | catalog load FILE | catalog export FILE
    python -m backend.cli grids import FILE.geojson [--replace]
    python -m backend.cli audit verify
    python -m backend.cli user NAME PASSWORD ROLE [--department-id N]
    python -m backend.cli run            (the whole system under the supervisor)
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from backend import config as cw_config


def _ctx():
    from backend.services.context import Context, use

    ctx = Context.from_config(cw_config.load())
    use(ctx)
    return ctx


def cmd_migrate(_args) -> int:
    from backend.store.db import migrate

    ctx = _ctx()
    migrate(ctx.engine)
    print(f"database migrated ({ctx.engine.dialect.name})")
    return 0


def cmd_seed(args) -> int:
    from backend.services import seed

    ctx = _ctx()
    from backend.store.db import migrate

    migrate(ctx.engine)
    seed.ensure_admin(ctx.config.admin_password)
    if seed.is_seeded():
        print("the store already holds a city: nothing seeded")
        return 0
    from backend.sim.city import build_city

    city = build_city()
    counts = seed.seed_city(city)
    from backend.services.gps import seed_devices

    counts.update({f"gps {k}": v for k, v in seed_devices(city).items()})
    print("demo city seeded:", ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.history_days:
        from backend.sim.flow import Flow
        from backend.services.cases import now_utc

        n = Flow(city, rate_per_minute=6, seed=7).backfill(days=args.history_days, now=now_utc(),
                                                           per_day=args.per_day)
        ctx.outbox.flush()
        print(f"history: {n} cases over {args.history_days} days")
    return 0


def cmd_catalog(args) -> int:
    from backend.domain.catalog import Catalog, CatalogError

    cfg = cw_config.load()
    if args.action == "export":
        from backend.domain.catalog import default_catalog

        Path(args.file).write_text(json.dumps(default_catalog().to_dict(), ensure_ascii=False, indent=1))
        print(f"catalog written to {args.file}")
        return 0
    try:
        catalog = Catalog.load(args.file)
    except (CatalogError, OSError, ValueError) as exc:
        print(f"catalog refused: {exc}", file=sys.stderr)
        return 2
    print(f"catalog ok: {len(catalog)} classes")
    if args.action == "load":
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.file, cfg.data_dir / "catalog.json")
        print(f"installed as {cfg.data_dir / 'catalog.json'}; restart the processes to use it")
    return 0


def cmd_grids(args) -> int:
    from backend.domain.grid import GridError
    from backend.services import seed

    ctx = _ctx()
    from backend.store.db import migrate

    migrate(ctx.engine)
    try:
        data = json.loads(Path(args.file).read_text())
        n = seed.import_grids(data, replace=args.replace)
    except (GridError, ValueError, KeyError, OSError) as exc:
        print(f"grids refused: {exc}", file=sys.stderr)
        return 2
    print(f"{n} unit grids imported")
    return 0


def cmd_audit(_args) -> int:
    from backend.services import audit

    _ctx()
    result = audit.verify()
    print(json.dumps(result.to_dict(), ensure_ascii=False))
    return 0 if result.ok else 1


def cmd_user(args) -> int:
    from backend.services import auth

    _ctx()
    auth.create_user(args.username, args.password, args.role, args.department_id)
    print(f"user {args.username} ({args.role}) saved")
    return 0


def cmd_run(_args) -> int:
    from backend import supervisor

    return supervisor.main()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="citywall")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate").set_defaults(fn=cmd_migrate)
    s = sub.add_parser("seed")
    s.add_argument("--history-days", type=int, default=14)
    s.add_argument("--per-day", type=int, default=120)
    s.set_defaults(fn=cmd_seed)
    c = sub.add_parser("catalog")
    c.add_argument("action", choices=["check", "load", "export"])
    c.add_argument("file")
    c.set_defaults(fn=cmd_catalog)
    g = sub.add_parser("grids")
    g.add_argument("action", choices=["import"])
    g.add_argument("file")
    g.add_argument("--replace", action="store_true")
    g.set_defaults(fn=cmd_grids)
    a = sub.add_parser("audit")
    a.add_argument("action", choices=["verify"])
    a.set_defaults(fn=cmd_audit)
    u = sub.add_parser("user")
    u.add_argument("username")
    u.add_argument("password")
    u.add_argument("role")
    u.add_argument("--department-id", type=int)
    u.set_defaults(fn=cmd_user)
    sub.add_parser("run").set_defaults(fn=cmd_run)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
