"""Which store this process uses: the one place that picks a backend.

It sits above both backends (store.py holds what they share), so neither imports the
other and nothing imports the Azure SDK until a Table Storage connection is configured.
"""

from __future__ import annotations

import functools
import logging

from shared.memory_store import MemoryStore
from shared.settings import Settings
from shared.store import Store

logger = logging.getLogger(__name__)


def get_store(settings: Settings) -> Store:
    """The process-wide store for these settings, built on first use."""
    return _store_for(settings)


@functools.lru_cache(maxsize=1)
def _store_for(settings: Settings) -> Store:
    if settings.store_connection is None:
        logger.warning("No storage configured: using the in-memory store (one process only)")
        return MemoryStore()
    from shared.table_store import TableStore  # azure-data-tables only where it is used

    return TableStore(
        settings.store_connection.reveal(),
        settings.store_table_prefix,
        connect_timeout=settings.store_connect_timeout,
        read_timeout=settings.store_read_timeout,
        cooldown=settings.store_cooldown,
    )
