"""The `gpu` limit on Prefect's temporary server: slots held by runs that died are freed, live ones are kept.

Real Prefect throughout: a temporary server on the tests' own PREFECT_HOME, Prefect's filesystem lease storage.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from flows.gpu_slots import LIMIT, ensure_gpu_limit, free_dead_slots, repossessor


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _limit():
    with _client() as client:
        return client.read_global_concurrency_limit_by_name(LIMIT)


def _set_active(n: int) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with _client() as client:
        client.update_global_concurrency_limit(LIMIT, GlobalConcurrencyLimitUpdate(active_slots=n))


def _lease(limit_id, ttl_s: float):
    from prefect.server.concurrency.lease_storage import ConcurrencyLimitLeaseMetadata
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage

    storage = ConcurrencyLeaseStorage()
    lease = asyncio.run(storage.create_lease([limit_id], timedelta(seconds=ttl_s), ConcurrencyLimitLeaseMetadata(slots=1)))
    return storage, lease


def test_temporary_server_keeps_leases_on_disk():
    from prefect.settings import get_current_settings

    import flows  # noqa: F401  (sets the lease storage before Prefect starts a server)

    assert os.environ["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"].endswith("lease_storage.filesystem")
    assert not get_current_settings().api.url


def test_a_slot_without_a_lease_is_freed_and_a_live_one_kept():
    ensure_gpu_limit(1)
    _set_active(1)  # what a run killed under in-memory leases leaves: a held slot nobody renews
    assert free_dead_slots(recheck_s=0) == 1
    assert _limit().active_slots == 0

    storage, lease = _lease(_limit().id, ttl_s=60)
    try:
        _set_active(1)
        assert free_dead_slots(recheck_s=0) == 0
        assert _limit().active_slots == 1
    finally:
        asyncio.run(storage.revoke_lease(lease.id))
        _set_active(0)


def test_an_expired_lease_is_revoked_and_its_slot_freed():
    ensure_gpu_limit(1)
    storage, lease = _lease(_limit().id, ttl_s=0.5)
    _set_active(1)
    time.sleep(1.0)
    assert ensure_gpu_limit(1) == 1
    assert _limit().active_slots == 0
    assert asyncio.run(storage.read_lease(lease.id)) is None


HOLDER = textwrap.dedent("""
    import sys, time
    import flows  # the lease storage, as `alignflow run` has it
    from prefect import flow, task

    @task(tags=["gpu"])
    def hold():
        print("holding", flush=True)
        time.sleep(3600)

    @flow
    def run():
        hold()

    run()
""")


@pytest.mark.slow
def test_a_run_killed_in_a_gpu_stage_does_not_block_the_next(tmp_path):
    """The failure seen in the field: a run killed while in a GPU stage; the next run must get the slot once the
    dead run's lease expires (60 s), not wait forever."""
    ensure_gpu_limit(1)
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    holder = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        assert _limit().active_slots == 1
        assert free_dead_slots(recheck_s=0) == 0  # alive and renewing: kept
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert _limit().active_slots == 1  # dead, but its slot is still counted
    deadline = time.monotonic() + 120
    with repossessor(every_s=2):
        while _limit().active_slots and time.monotonic() < deadline:
            time.sleep(1)
    assert _limit().active_slots == 0, "the dead run's slot was not freed"
