#!/usr/bin/env sh
# Create every topic with the partition count in schemas/topics.json (idempotent).
set -eu
python - <<'PY'
import asyncio, os
from ssmatch.kafka import ensure_topics
print(asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"], timeout_s=120)))
PY
