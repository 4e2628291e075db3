"""python -m services.production: the production API and its Kafka consumer in one process."""

import uvicorn

from services.production.bootstrap import build_app
from services.production.settings import ProductionSettings

if __name__ == "__main__":
    settings = ProductionSettings()
    uvicorn.run(
        build_app(production=settings), host=settings.http_host, port=settings.http_port, log_config=None
    )
