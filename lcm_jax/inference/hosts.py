"""Work shared by the processes of a multi-process run (`lcm_jax.distributed.initialize`).

    mine = share(videos)           # this process's videos: disjoint shares that cover them all
    barrier("results-written")     # every process waits here for the others
    everyone = gather(failures)    # [process 0's, process 1's, ...] (JSON-serialisable values)

With one process these are the identity, a no-op and `[value]`. The collectives go through JAX
(`multihost_utils`), so every process must call them in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

T = TypeVar("T")


def share(items: Sequence[T]) -> list[T]:
    """Every N-th item from this process's index (N processes): disjoint, and together all."""
    return list(items[jax.process_index() :: jax.process_count()])


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier `name`."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gather(value: Any) -> list[Any]:
    """Every process's `value` (a JSON-serialisable one), in process order, on every process."""
    if jax.process_count() == 1:
        return [value]
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(row[:size]).decode()) for row, size in zip(rows, sizes, strict=True)]
