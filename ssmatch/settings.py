"""Settings shared by every service, read from the environment (names are part of CONTRACT.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """One settings object for all services; each reads what it needs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    mongodb_uri: str = Field(
        "mongodb://127.0.0.1:27017/?directConnection=true", validation_alias=_env("MONGODB_URI")
    )
    catalog_port: int = Field(8000, validation_alias=_env("CATALOG_PORT"))
    matcher_port: int = Field(8001, validation_alias=_env("MATCHER_PORT"))
    notify_port: int = Field(8002, validation_alias=_env("NOTIFY_PORT"))
    bind_host: str = Field("127.0.0.1", validation_alias=_env("SSMATCH_BIND_HOST"))
    admin_token: str | None = Field(None, validation_alias=_env("SSMATCH_ADMIN_TOKEN"))

    catalog_db: str = Field("ssmatch_catalog", validation_alias=_env("SSMATCH_CATALOG_DB"))
    matcher_db: str = Field("ssmatch_matcher", validation_alias=_env("SSMATCH_MATCHER_DB"))
    notify_db: str = Field("ssmatch_notify", validation_alias=_env("SSMATCH_NOTIFY_DB"))
    # Prefix of consumer-group ids ("<prefix>-notify", "<prefix>-catalog-matches"): lets two
    # deployments (or a test instance) share a cluster without sharing partitions.
    group_prefix: str = Field("ssmatch", validation_alias=_env("SSMATCH_GROUP_PREFIX"))

    # Kafka client tuning. Defaults suit real Kafka; the embedded launcher lowers the batch size
    # because Tansu reports wrong end offsets after multi-record batches (see STACK.md).
    kafka_fetch_max_wait_ms: int = Field(25, validation_alias=_env("SSMATCH_KAFKA_FETCH_MAX_WAIT_MS"))
    # notify is off the path to a proposal: its consumer may wait longer, which spares an embedded
    # broker that answers only at the wait about 40 empty fetches a second
    notify_fetch_max_wait_ms: int = Field(250, gt=0, validation_alias=_env("SSMATCH_NOTIFY_FETCH_MAX_WAIT_MS"))
    kafka_producer_max_batch_bytes: int = Field(
        16384, validation_alias=_env("SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES")
    )
    kafka_session_timeout_s: float = Field(6.0, validation_alias=_env("SSMATCH_KAFKA_SESSION_TIMEOUT_S"))

    # Catalog: per-token rate limit (`limits` moving windows: BURST a second and PER_MINUTE a minute; the
    # admin token is exempt; 0 disables). STORAGE `mongodb` shares the windows across catalog replicas.
    rate_limit_per_minute: float = Field(600, ge=0, validation_alias=_env("SSMATCH_RATE_LIMIT_PER_MINUTE"))
    rate_limit_burst: int = Field(100, ge=1, validation_alias=_env("SSMATCH_RATE_LIMIT_BURST"))
    rate_limit_storage: Literal["memory", "mongodb"] = Field("memory", validation_alias=_env("SSMATCH_RATE_LIMIT_STORAGE"))

    # Notify delivery channels. E-mail is off until SSMATCH_SMTP_HOST is set.
    smtp_host: str | None = Field(None, validation_alias=_env("SSMATCH_SMTP_HOST"))
    smtp_port: int = Field(587, validation_alias=_env("SSMATCH_SMTP_PORT"))
    smtp_security: str = Field("starttls", validation_alias=_env("SSMATCH_SMTP_SECURITY"))
    smtp_username: str | None = Field(None, validation_alias=_env("SSMATCH_SMTP_USERNAME"))
    smtp_password: str | None = Field(None, validation_alias=_env("SSMATCH_SMTP_PASSWORD"))
    smtp_sender: str = Field("South-South Match <no-reply@ssmatch.example>", validation_alias=_env("SSMATCH_SMTP_SENDER"))
    # Webhooks to loopback/private/link-local addresses are refused unless this is set (tests, labs).
    webhook_allow_private: bool = Field(False, validation_alias=_env("SSMATCH_WEBHOOK_ALLOW_PRIVATE"))
    webhook_max_attempts: int = Field(5, ge=1, le=20, validation_alias=_env("SSMATCH_WEBHOOK_MAX_ATTEMPTS"))
    webhook_timeout_s: float = Field(5.0, gt=0, validation_alias=_env("SSMATCH_WEBHOOK_TIMEOUT_S"))
    webhook_backoff_base_s: float = Field(1.0, ge=0, validation_alias=_env("SSMATCH_WEBHOOK_BACKOFF_BASE_S"))
    # Lease on a claimed delivery, renewed every third of it while the delivery is in flight; a
    # crashed worker's deliveries are taken again once it runs out.
    delivery_lease_s: float = Field(60.0, gt=0, le=3600, validation_alias=_env("SSMATCH_DELIVERY_LEASE_S"))
    # Notify limits: webhooks per organization, requests per token and minute (0 disables).
    notify_max_webhooks: int = Field(10, ge=1, le=1000, validation_alias=_env("SSMATCH_NOTIFY_MAX_WEBHOOKS"))
    notify_rate_limit: str = Field("300/minute", validation_alias=_env("SSMATCH_NOTIFY_RATE_LIMIT"))
    delivery_poll_interval_s: float = Field(1.0, gt=0, validation_alias=_env("SSMATCH_DELIVERY_POLL_INTERVAL_S"))
    expiry_scan_interval_s: float = Field(3600.0, gt=0, validation_alias=_env("SSMATCH_EXPIRY_SCAN_INTERVAL_S"))
    expiry_reminder_days: int = Field(7, ge=1, le=90, validation_alias=_env("SSMATCH_EXPIRY_REMINDER_DAYS"))
    public_catalog_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("SSMATCH_PUBLIC_CATALOG_URL"))

    # Where services other than the catalog check bearer tokens (GET /v1/tokens/self); unset: the
    # catalog on 127.0.0.1:CATALOG_PORT. Answers are cached at most token_cache_s (≤ 60 s), which
    # bounds how long a revoked token keeps working outside the catalog.
    catalog_url: str | None = Field(None, validation_alias=_env("SSMATCH_CATALOG_URL"))
    token_cache_s: float = Field(15.0, ge=0, le=60, validation_alias=_env("SSMATCH_TOKEN_CACHE_S"))
    # The catalog's own token check: a valid token's answer is kept this long (0: every request reads the
    # store). A revocation is seen at once by the process that made it; another catalog process may
    # accept the revoked token for up to this long.
    catalog_token_cache_s: float = Field(2.0, ge=0, le=10, validation_alias=_env("SSMATCH_CATALOG_TOKEN_CACHE_S"))

    # Catalog search (issue 13): where the word index lives (a directory per catalog database below it;
    # unset: the system's temporary directory, as tests want; `make run` puts it under SSMATCH_DATA_DIR),
    # and the matcher that answers searches by meaning (unset: 127.0.0.1:MATCHER_PORT) within a timeout.
    search_index_dir: str | None = Field(None, validation_alias=_env("SSMATCH_SEARCH_INDEX_DIR"))
    matcher_url: str | None = Field(None, validation_alias=_env("SSMATCH_MATCHER_URL"))
    search_meaning_timeout_s: float = Field(1.0, gt=0, le=30, validation_alias=_env("SSMATCH_SEARCH_MEANING_TIMEOUT_S"))

    matcher_rules_file: str | None = Field(None, validation_alias=_env("SSMATCH_RULES_FILE"))

    outbox_poll_interval_s: float = Field(0.5, validation_alias=_env("SSMATCH_OUTBOX_POLL_INTERVAL_S"))
    # Outbox relay: one relay publishes at a time (a lease with a fencing token, renewed while it works);
    # published rows are kept this long so a broker that lost its topics (the in-memory embedded one
    # after a restart) gets them again; the relay checks the broker every `outbox_check_interval_s`.
    outbox_lease_s: float = Field(10.0, gt=0, validation_alias=_env("SSMATCH_OUTBOX_LEASE_S"))
    outbox_retention_s: float = Field(7 * 24 * 3600.0, ge=0, validation_alias=_env("SSMATCH_OUTBOX_RETENTION_S"))
    outbox_check_interval_s: float = Field(5.0, gt=0, validation_alias=_env("SSMATCH_OUTBOX_CHECK_INTERVAL_S"))

    # Ports of the embedded servers: when KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI are not set, every
    # process (services, `ssmatch` CLI) finds the embedded ones here, as `make run` starts them.
    kafka_port: int = Field(9092, validation_alias=_env("SSMATCH_KAFKA_PORT"))
    mongo_port: int = Field(27017, validation_alias=_env("SSMATCH_MONGO_PORT"))
    # How many matcher worker processes `make run` starts (one consumer group).
    matcher_workers: int = Field(1, ge=1, le=32, validation_alias=_env("SSMATCH_MATCHER_WORKERS"))
    # Matcher candidate generation: ANN neighbours rescored per list, and below how many open items of
    # a kind every item is scored instead (exact). 0 forces the ANN path (tests of its recall).
    matcher_candidates: int = Field(200, ge=1, validation_alias=_env("SSMATCH_MATCHER_CANDIDATES"))
    matcher_exact_below: int = Field(2000, ge=0, validation_alias=_env("SSMATCH_MATCHER_EXACT_BELOW"))
    # below this many open items of a kind, neighbours come from an exact scan instead of HNSW (0: HNSW always)
    matcher_scan_below: int = Field(150_000, ge=0, validation_alias=_env("SSMATCH_MATCHER_SCAN_BELOW"))
    # the centring snapshot is rebuilt when the open corpus has doubled and holds at least this many items
    matcher_centring_min_items: int = Field(500, ge=1, validation_alias=_env("SSMATCH_MATCHER_CENTRING_MIN_ITEMS"))
    log_level: str = Field("INFO", validation_alias=_env("SSMATCH_LOG_LEVEL"))
    log_format: str = Field("json", validation_alias=_env("SSMATCH_LOG_FORMAT"))

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        """Without an explicit URI, point at the embedded servers' ports (the launcher's defaults)."""
        if "kafka_bootstrap_servers" not in self.model_fields_set:
            self.kafka_bootstrap_servers = f"127.0.0.1:{self.kafka_port}"
        if "mongodb_uri" not in self.model_fields_set:
            self.mongodb_uri = f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"
        return self


    @property
    def matcher_base_url(self) -> str:
        return (self.matcher_url or f"http://127.0.0.1:{self.matcher_port}").rstrip("/")

    @property
    def search_index_path(self) -> Path:
        import tempfile

        root = Path(self.search_index_dir) if self.search_index_dir else Path(tempfile.gettempdir()) / "ssmatch-search"
        return root / self.catalog_db

    @property
    def catalog_base_url(self) -> str:
        return (self.catalog_url or f"http://127.0.0.1:{self.catalog_port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
