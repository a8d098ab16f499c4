"""The `gpu` concurrency limit: created per run, and freed of slots held by runs that no longer exist.

Why this exists (orchestration glue, no library does it for the embedded default): a Prefect task tagged `gpu`
holds a slot of the `tag:gpu` limit under a 60 s lease that its process keeps renewing. A real Prefect server
(`prefect server start`) runs the *repossessor* service, which frees the slot of a lease nobody renews any more
(the holder was killed: OOM, `kill -9`, a lost machine). The temporary server that `alignflow run` starts when
no PREFECT_API_URL is set runs no repossessor, and by default keeps leases in its own memory, so a run killed
while in a GPU stage leaves `active_slots` at the limit in the shared database (PREFECT_HOME/prefect.db) and
every later run on the machine waits for that slot forever, silently. Measured here: a default run sat 2 h 20 min
in `prepare_model` behind a slot leaked the day before.

So, for temporary servers only: leases are kept on disk (PREFECT_HOME/concurrency_leases, Prefect's own
filesystem lease storage, set in flows/__init__.py before Prefect starts), which every temporary server and
every run on the machine sees; and before each run `free_dead_slots` does the repossessor's job once: expired
leases are revoked, and `active_slots` is lowered to what the live leases hold. A run killed while holding the
slot therefore delays the next run by at most the lease's 60 s plus one sweep, with a log line saying why; a
`repossessor` thread repeats the sweep while a run waits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any

LIMIT = "tag:gpu"
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


def uses_temporary_server() -> bool:
    """True when no PREFECT_API_URL is configured: Prefect then starts a temporary server on this machine."""
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


def _live_slots(limit_id: Any) -> int:
    """Revoke expired leases on disk; the slots the live ones hold on `limit_id`."""
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage

    async def scan() -> int:
        storage = ConcurrencyLeaseStorage()
        while expired := await storage.read_expired_lease_ids(limit=100):
            for lease_id in expired:
                await storage.revoke_lease(lease_id)
        held = 0
        for lease_id in await storage.read_active_lease_ids(limit=10_000):
            lease = await storage.read_lease(lease_id)
            if lease is not None and lease.metadata is not None and limit_id in lease.resource_ids:
                held += lease.metadata.slots
        return held

    return asyncio.run(scan())


def free_dead_slots(logger: logging.Logger | logging.LoggerAdapter | None = None, recheck_s: float = 2.0) -> int:
    """On a temporary server, lower `active_slots` of the `gpu` limit to what live leases hold; the slots freed.

    A slot is counted in the database a moment before its lease is written, so an excess seen once may be a run
    that is acquiring right now: only an excess seen in two scans `recheck_s` apart is freed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    if not uses_temporary_server():
        return 0  # a real server's repossessor frees dead holders' slots itself
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(LIMIT)
        except ObjectNotFound:
            return 0
        if current.active_slots <= _live_slots(current.id):
            return 0
        time.sleep(recheck_s)
        current = client.read_global_concurrency_limit_by_name(LIMIT)
        live = _live_slots(current.id)
        if current.active_slots <= live:
            return 0
        freed = current.active_slots - live
        client.update_global_concurrency_limit(LIMIT, GlobalConcurrencyLimitUpdate(active_slots=live))
    if logger is not None:
        logger.warning("freed %d `gpu` slot(s) held by runs that no longer exist (killed while in a GPU stage); "
                       "%d held by live runs", freed, live)
    return freed


def ensure_gpu_limit(limit: int, logger: logging.Logger | logging.LoggerAdapter | None = None) -> int:
    """Create/refresh the `gpu` tag limit that serialises GPU stages across concurrent runs, and free the slots
    of runs that died holding them (temporary server). Returns the number of slots freed."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=limit)
    return free_dead_slots(logger)


@contextmanager
def repossessor(logger: logging.Logger | logging.LoggerAdapter | None = None, every_s: float = 15.0):
    """For the life of a run on a temporary server, free dead runs' slots every `every_s`: a run that queues
    behind a holder that is killed later (its lease still live at this run's start) would otherwise wait forever."""
    if not uses_temporary_server():
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                free_dead_slots(logger)
            except Exception as exc:  # a failed sweep must not kill the run; the next one retries
                if logger is not None:
                    logger.debug("gpu slot sweep failed: %s", exc)

    thread = threading.Thread(target=loop, name="alignflow-gpu-repossessor", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)


def report_if_waiting(logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Say so before a GPU stage queues behind another run's slot: Prefect waits for it without a word."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(LIMIT)
        except ObjectNotFound:
            return
    if current.active and current.active_slots >= current.limit:
        logger.info(
            "waiting for a `gpu` slot: %d of %d held by other runs on this Prefect server (the slot of a run "
            "that was killed is freed once its 60 s lease expires)",
            current.active_slots, current.limit,
        )
