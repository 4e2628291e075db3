"""Imports every context module so the registry knows all public messages."""

from libs.events import access, billing, intake, inventory, order, order_imports, production  # noqa: F401
