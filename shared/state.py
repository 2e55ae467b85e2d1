"""Which store this process uses: the one place that picks a backend.

It sits above both backends (store.py holds what they share), so neither imports the
other and nothing imports the Azure SDK until a Table Storage connection is configured.
On Azure there is no silent fallback to memory: without a store, state routes answer 503.
"""

from __future__ import annotations

import functools
import logging

from shared.errors import MissingSetting, ServiceUnavailable
from shared.memory_store import MemoryStore
from shared.settings import HOST_STORAGE, Settings, StoreIdentity
from shared.store import Store

logger = logging.getLogger(__name__)
# What `azd up` sets (infra/app.bicep), so what a deployment missing it most likely lacks.
STORE_SETTING = f"{HOST_STORAGE}__tableServiceUri"


class StoreNotConfigured(ServiceUnavailable):
    """On Azure without a shared store: state kept per instance would make limits and
    idempotency hold per instance only, so routes needing state refuse instead."""

    problem_type = MissingSetting.problem_type

    def __init__(self) -> None:
        super().__init__(
            "The server is not configured for this operation: no state store. Set "
            f"{STORE_SETTING} (Table Storage through the app's managed identity) or "
            "STATE_STORE_CONNECTION (a connection string).",
            title="Server not configured",
            extra={"setting": STORE_SETTING},
        )


def get_store(settings: Settings) -> Store:
    """The process-wide store for these settings, built on first use; on Azure without
    a store configured, StoreNotConfigured (503 naming the setting), never memory."""
    if settings.store_kind == "missing":
        raise StoreNotConfigured()
    return _store_for(settings)


@functools.lru_cache(maxsize=1)
def _store_for(settings: Settings) -> Store:
    target: str | StoreIdentity | None = settings.store_identity
    if settings.store_connection is not None:
        target = settings.store_connection.reveal()
    if target is None:
        logger.warning("No storage configured: using the in-memory store (one process only)")
        return MemoryStore()
    from shared.parallel import POOL_THREADS
    from shared.table_store import TableStore  # azure-data-tables only where it is used

    return TableStore(
        target,
        settings.store_table_prefix,
        connect_timeout=settings.store_connect_timeout,
        read_timeout=settings.store_read_timeout,
        cooldown=settings.store_cooldown,
        connections=settings.worker_threads + POOL_THREADS,
    )
