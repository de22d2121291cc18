"""Adapters of the catalog to MongoDB and Kafka.

- `CatalogStore` (`services/catalog/store.py`): organizations, tokens, needs, offers, outbox, audit,
  and the match projection's two write methods (owned by the matcher's side).
- `MatchRepository` (`adapters/matches.py`): the queue, claims, decisions, lifecycle steps, report rows.
- `OutboxRelay` (`services/catalog/outbox.py`) and `match_projection` (`services/catalog/projection.py`).
"""

from __future__ import annotations

from services.catalog.adapters.matches import MatchRepository
from services.catalog.store import CatalogStore

__all__ = ["CatalogStore", "MatchRepository"]
