"""Ranks, for stages started by `accelerate launch` / `torchrun` with several processes.

Every process runs the whole stage body and trains on its shard of the data; only the main process (rank 0)
talks to MLflow and writes outputs (tasks/common/tracking.py and io.py ask `is_main_process()`), and the others
wait at a barrier before anyone reads what it wrote. Started plainly (`python -m tasks.sft`, tests, Prefect
through `dvc repro`) there is no process group: world size 1, rank 0, and every helper here is a no-op that
imports nothing heavy, so the single-process path is exactly what it was.

The process group is created by accelerate's `PartialState` (the same object TRL's trainers use), on the first
call that needs it: gloo on CPU, NCCL on GPUs (and then each rank's default CUDA device is its local GPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """True in a process started by a multi-process launcher (torchrun / accelerate launch set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _dist():
    """torch.distributed with the process group up (created through accelerate's PartialState if needed)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
        PartialState(cpu=use_cpu)  # on CPU accelerate only forms a group when told cpu=True
    return dist


def world_size() -> int:
    return _dist().get_world_size() if launched() else 1


def rank() -> int:
    return _dist().get_rank() if launched() else 0


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if launched():
        _dist().barrier()


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` on the main process only and hand its (picklable) result to every rank — for steps that change
    shared files and decide something, e.g. `resume_checkpoint` (clears or keeps the checkpoint dir, returns the
    checkpoint to resume from): two ranks doing it at once would race on the same directory."""
    if not launched():
        return fn(*args, **kwargs)
    dist = _dist()
    box = [fn(*args, **kwargs) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (picklable Python objects; floats travel exactly)."""
    if not launched():
        return [obj]
    dist = _dist()
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(tensor):
    """Concatenate every rank's tensor along dim 0 (same shape on every rank), in rank order."""
    if not launched():
        return tensor
    import torch

    dist = _dist()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum_(tensor):
    """In-place sum over ranks; returns the tensor."""
    if launched():
        _dist().all_reduce(tensor)
    return tensor


def broadcast_(tensor, src: int = 0):
    """In-place copy of rank `src`'s tensor to every rank; returns the tensor."""
    if launched():
        _dist().broadcast(tensor, src=src)
    return tensor


def sharded_engine() -> str | None:
    """"FSDP" / "DeepSpeed" when the launcher asked for sharded training (accelerate's env flags), else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed"
    return None


def save_trained_adapter(trainer, out_dir) -> None:
    """Save a TRL/transformers Trainer's PEFT model to `out_dir`; every rank calls it.

    One plain process: `trainer.model.save_pretrained` (what the stages always did). Several, or FSDP/DeepSpeed:
    the full state dict is collected first on every rank — a collective under FSDP and ZeRO-3, where each rank holds
    a shard (fsdp.yaml asks for FULL_STATE_DICT, zero3.yaml for the 16-bit gather); a local copy under DDP — and the
    main process writes the adapter from it."""
    if not launched() and sharded_engine() is None:
        trainer.model.save_pretrained(out_dir)
        return
    accelerator = trainer.accelerator
    state = accelerator.get_state_dict(trainer.model_wrapped)
    if is_main_process():
        accelerator.unwrap_model(trainer.model).save_pretrained(out_dir, state_dict=state)


def shared_dataset(rows: list[dict[str, Any]], directory):
    """`datasets.Dataset.from_list(rows)`; under a multi-process launch, backed by files in `directory` (written by
    the main process, read by all).

    Why: TRL's DPO/KTO trainers with `precompute_ref_log_probs` have rank 0 write the reference log-probs to a
    cache file "next to the dataset" and every rank read it back. An in-memory dataset has no such place — each
    process picks a random file in its own temporary directory — so the other ranks fail with FileNotFoundError
    (TRL 1.16). A dataset saved to a shared directory gives every rank the same cache path."""
    from datasets import Dataset, load_from_disk

    if not launched():
        return Dataset.from_list(rows)
    if is_main_process():
        import shutil

        shutil.rmtree(directory, ignore_errors=True)  # stale reference caches of an earlier run
        Dataset.from_list(rows).save_to_disk(str(directory))
    barrier()
    return load_from_disk(str(directory))
