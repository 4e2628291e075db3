"""python -m services.inventory: the inventory API and its Kafka consumers in one process."""

import uvicorn

from services.inventory.bootstrap import build_app
from services.inventory.settings import InventorySettings

if __name__ == "__main__":
    settings = InventorySettings()
    uvicorn.run(build_app(), host=settings.http_host, port=settings.http_port, log_config=None)
