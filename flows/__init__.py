"""Prefect flows. Importing this package, before Prefect starts a temporary server, keeps that server's
concurrency leases on disk so a run killed in a GPU stage cannot hold the `gpu` slot forever (flows/gpu_slots.py)."""

import os

os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem")
