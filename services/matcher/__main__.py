"""`python -m services.matcher`: run one faust worker (HTTP on MATCHER_PORT). Start several with
different MATCHER_PORT values to scale out: they share the consumer group `<prefix>-matcher`."""

from __future__ import annotations

import asyncio
import logging
import sys

from faust.worker import Worker

from services.matcher.app import create_app
from services.matcher.runtime import MatcherRuntime
from services.matcher.scoring import Embedder, RulesError, load_rules
from services.matcher.scoring.text import init as init_text
from ssmatch.kafka import ensure_topics
from ssmatch.logging import configure_logging
from ssmatch.settings import get_settings


def main() -> None:
    settings = get_settings()
    try:
        rules = load_rules(settings.matcher_rules_file)
    except RulesError as exc:
        print(f"matcher: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    embedder = Embedder()
    embedder.embed(["warm-up"])  # fail loudly now, not on the first need, if the model cannot run
    init_text()
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers))
    app = create_app(MatcherRuntime(settings, rules, embedder.embed))
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    configure_logging("matcher", settings.log_level, settings.log_format)
    logging.getLogger("faust").setLevel(logging.WARNING)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
