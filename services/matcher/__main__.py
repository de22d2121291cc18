"""`python -m services.matcher`: run the faust worker (HTTP on MATCHER_PORT)."""

from __future__ import annotations

import asyncio
import logging

from faust.worker import Worker

from services.matcher.app import create_app
from services.matcher.pipeline import SectorOverlapScorer
from ssmatch.kafka import ensure_topics
from ssmatch.logging import configure_logging
from ssmatch.settings import get_settings


def main() -> None:
    settings = get_settings()
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers))
    app, _ = create_app(settings, SectorOverlapScorer())
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    configure_logging("matcher", settings.log_level, settings.log_format)
    logging.getLogger("faust").setLevel(logging.WARNING)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
