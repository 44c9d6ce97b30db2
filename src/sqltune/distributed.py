"""Several processes (`accelerate launch`, DDP): which rank decides and writes, and how the others follow.

Under `accelerate launch --num_processes N` every rank runs `sqltune train`. Rank 0 alone touches the
file system (work folder, metrics.jsonl, candidates, the output folder) and alone generates and scores
the valid questions (bf16 generation differs across GPUs, so N ranks could choose differently);
`on_main` hands its result, or its error, to every rank, so all ranks keep the same history, choose the
same step and stop at the same time. With one process every helper is a plain call: single-process
training runs exactly as before.
"""

from __future__ import annotations

import os

from .errors import SqltuneError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _active() -> bool:
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank (picklable objects)."""
    if not _active():
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(values: list[int]) -> list[int]:
    """Element-wise sum of `values` over the ranks (token counts)."""
    if not _active():
        return values
    import torch.distributed as dist

    every = [None] * world_size()
    dist.all_gather_object(every, list(values))
    return [sum(v[i] for v in every) for i in range(len(values))]


def on_main(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on rank 0 only; every rank returns its result, or raises its error (the
    other ranks as a SqltuneError with rank 0's message, so none waits for a rank that has failed)."""
    if not _active():
        return fn(*args, **kwargs)
    result = error = None
    failure = None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the other ranks, then raised again here
            failure, error = e, (str(e) if isinstance(e, SqltuneError) else f"rank 0 failed: {type(e).__name__}: {e}")
    result, error = broadcast((result, error))
    if failure is not None:
        raise failure
    if error is not None:
        raise SqltuneError(error)
    return result
