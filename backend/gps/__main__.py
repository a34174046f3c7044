"""``python -m backend.gps``: run the JT/T 808 and OsmAnd gateways in this process."""
from __future__ import annotations

import asyncio
import logging
import os

from backend import config as config_module
from backend.gps.gateway import serve


def main() -> None:
    logging.basicConfig(level=os.environ.get("CITYWALL_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(config_module.load()))


if __name__ == "__main__":
    main()
