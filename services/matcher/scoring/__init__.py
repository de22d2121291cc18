"""The matcher's pure scoring domain: items, rules, embeddings and explained scores."""

from services.matcher.scoring.centering import LanguageCentroids
from services.matcher.scoring.embedding import Embedder, EmbeddingUnavailable
from services.matcher.scoring.model import MatchItem, Score
from services.matcher.scoring.reasons import TEMPLATES as REASON_TEMPLATES
from services.matcher.scoring.reasons import Reason
from services.matcher.scoring.rules import Rules, RulesError, load_rules, parse_rules
from services.matcher.scoring.score import (
    BatchScores,
    CandidateSet,
    Prepared,
    TextWhere,
    item_text,
    prepare,
    score_against,
    score_need_against_offers,
    score_offer_against_needs,
    score_pair,
    score_prepared,
)

__all__ = [
    "REASON_TEMPLATES",
    "BatchScores",
    "CandidateSet",
    "Embedder",
    "EmbeddingUnavailable",
    "LanguageCentroids",
    "MatchItem",
    "Prepared",
    "Reason",
    "Rules",
    "RulesError",
    "Score",
    "TextWhere",
    "item_text",
    "load_rules",
    "parse_rules",
    "prepare",
    "score_against",
    "score_need_against_offers",
    "score_offer_against_needs",
    "score_pair",
    "score_prepared",
]
