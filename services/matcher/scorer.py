"""RulesScorer: the adapter between the matcher's stored item documents and the pure scoring domain."""

from __future__ import annotations

from typing import Any

from services.matcher.scoring import (
    BatchScores,
    CandidateSet,
    Embedder,
    LanguageCentroids,
    MatchItem,
    Prepared,
    Rules,
    item_text,
    prepare,
    score_against,
)


def to_match_item(doc: dict[str, Any]) -> MatchItem:
    return MatchItem.model_validate({**doc, "id": doc.get("_id", doc.get("id"))})


class CandidateScores:
    def __init__(self, batch: BatchScores) -> None:
        self.batch = batch
        self.total = batch.total
        self.excluded = batch.excluded

    def explanation(self, i: int) -> dict[str, Any]:
        return self.batch.score(i).explanation()


class RulesScorer:
    """Scores with the rules file; caches each item's prepared features per revision."""

    def __init__(self, rules: Rules, embedder: Embedder | None = None) -> None:
        self.rules = rules
        self.rules_version = rules.version
        self.top_k = rules.top_k
        self.min_score = rules.min_score
        self.embedder = embedder or Embedder()
        self._prepared: dict[str, tuple[int, Prepared]] = {}
        # the candidate matrix of the last candidate list: a batch rescores many items against one list
        self._last_candidates: list[dict[str, Any]] | None = None
        self._last_set: CandidateSet | None = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts).tolist()  # type: ignore[no-any-return]

    def item_text(self, item: dict[str, Any]) -> str:
        return item_text(to_match_item(item))

    def _prepare(self, doc: dict[str, Any]) -> Prepared:
        key, revision = str(doc["_id"]), int(doc["revision"])
        held = self._prepared.get(key)
        if held is None or held[0] != revision or held[1].open != (doc.get("status") == "open"):
            held = (revision, prepare(to_match_item(doc), self.rules))
            self._prepared[key] = held
        return held[1]

    def score_against(self, item: dict[str, Any], candidates: list[dict[str, Any]], centroids: LanguageCentroids | None = None) -> CandidateScores:
        if candidates is not self._last_candidates or self._last_set is None:
            self._last_candidates, self._last_set = candidates, CandidateSet.build([self._prepare(c) for c in candidates])
        candidate_set = self._last_set
        return CandidateScores(score_against(self._prepare(item), candidate_set, self.rules, centroids))
