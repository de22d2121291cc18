"""South-South Match shared package: settings, logging, events, Kafka/Mongo helpers, embedded stack."""

__version__ = "0.1.0"
