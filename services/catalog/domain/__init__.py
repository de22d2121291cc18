"""The catalog's pure domain: item rules, the match state machine, who may do what, domain errors.

Nothing here imports FastAPI, pymongo or the network: these modules take plain values (dicts of
stored documents, a Principal) and answer or raise a `DomainError`. The HTTP edge maps the errors
to statuses (`services/catalog/api/errors.py`); the web pages map them to messages.
"""
