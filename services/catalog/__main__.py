"""`python -m services.catalog`: serve the catalog on CATALOG_PORT."""

from __future__ import annotations

import uvicorn

from services.catalog.app import create_app
from ssmatch.logging import configure_logging
from ssmatch.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("catalog", settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.catalog_port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
