"""The fixed-capacity memory of one video, as a pytree, and its schedule (spec, Inference).

STM's evaluation loop reads, at frame t, the frames 0, 5, 10, ... (`mem_every`) plus frame
t − 1, which is always read but kept only when it is a multiple of `mem_every`. Here each frame
is written into the pool right after it is segmented (with its final soft mask), into:

1. the slot that holds the previous non-kept frame, if any (frame t − 1 replaces t − 2);
2. else the first empty slot;
3. else the slot of the oldest kept frame that is no object's reference (eviction).

A written frame is kept when t % mem_every == 0 or when a mask was given on it (a reference
frame: ORM's reference of the objects first annotated there, a given ground truth for all);
reference frames are evicted only when every slot holds one. The number of slots is fixed
(`capacity`), validity masks mark what GRM reads, so nothing changes shape as the memory fills
or objects join.

Objects join when their first mask arrives: object o reads a slot only if the slot's frame is
not older than the frame where o joined (`first_frame[o]`); before it joins, o is padded.

Shapes (one video; a batch row b = s·G + g for flip stream s < S and object group g < G, each
group holding M object slots (the engine's Geometry); object index o = g·M + m; O = G·M):
  k_g [S·G, M, T, h, w, Ck] (None without GRM), v [S·G, M, T, h, w, Cv]; slot bookkeeping [T];
  first_frame [O] int32; prev = PrevFrame(k_l [S·G, M, h, w, Ck] or None, mask [S·G, M, H, W]);
  reference = Reference(v [S·G, M, h, w, Cv], mask [S·G, M, H, W]), H, W the padded size.
Dtypes: keys as the model computes them (float32, also in a bf16 model, unless its
attention_dtype is "compute"), values in the model's compute dtype, masks float32; the slot
bookkeeping frame int32, kept and reference bool.
"""

from typing import Any

import flax.struct
import jax.numpy as jnp

from lcm_jax.model import MemoryFrame, MemoryPool, PrevFrame, Reference

NOT_JOINED = jnp.iinfo(jnp.int32).max  # first_frame of an object whose mask has not arrived
EMPTY = -1  # frame index of an empty slot
_REFERENCE_AGE = 2**30  # added to a reference slot's frame index when choosing a slot to evict


@flax.struct.dataclass
class Schedule:
    """Bookkeeping of T slots: frame int32 [T] (EMPTY when empty), kept bool [T] (stays after
    the next write), reference bool [T] (a mask was given on that frame)."""

    frame: jnp.ndarray
    kept: jnp.ndarray
    reference: jnp.ndarray


def empty_schedule(capacity: int) -> Schedule:
    """A schedule of `capacity` empty slots."""
    if capacity < 2:
        raise ValueError(f"memory capacity must be >= 2 (a kept frame and t - 1), got {capacity}")
    return Schedule(
        frame=jnp.full((capacity,), EMPTY, jnp.int32),
        kept=jnp.zeros((capacity,), bool),
        reference=jnp.zeros((capacity,), bool),
    )


def choose_slot(schedule: Schedule):
    """Slot for the next frame (int32 scalar): the non-kept slot, else the first empty slot,
    else the oldest kept non-reference slot (else the oldest reference slot)."""
    filled = schedule.frame != EMPTY
    score = jnp.where(
        filled & ~schedule.kept,
        -2,
        jnp.where(
            ~filled,
            -1,
            jnp.where(schedule.reference, schedule.frame + _REFERENCE_AGE, schedule.frame),
        ),
    )
    return jnp.argmin(score).astype(jnp.int32)


def keep_frame(t, mem_every: int, annotated):
    """Whether frame t stays in memory: a multiple of mem_every, or a frame with a given mask."""
    return (t % mem_every == 0) | annotated


def record(schedule: Schedule, slot, t, keep, annotated) -> Schedule:
    """Marks `slot` as holding frame t."""
    return Schedule(
        frame=schedule.frame.at[slot].set(t),
        kept=schedule.kept.at[slot].set(keep),
        reference=schedule.reference.at[slot].set(annotated),
    )


def readable(schedule: Schedule, first_frame):
    """bool [O, T]: object o reads slot i when it is filled with a frame >= first_frame[o]."""
    filled = schedule.frame != EMPTY
    return filled[None, :] & (schedule.frame[None, :] >= first_frame[:, None])


@flax.struct.dataclass
class Memory:
    """Everything one video carries from frame to frame; shapes in the module docstring."""

    k_g: Any
    v: jnp.ndarray
    schedule: Schedule
    first_frame: jnp.ndarray
    prev: PrevFrame
    reference: Reference


def init_memory(
    encoded: MemoryFrame, *, streams: int, capacity: int, size: tuple[int, int]
) -> Memory:
    """An empty memory shaped after one encoded frame.

    Args:
      encoded: shapes and dtypes (e.g. from jax.eval_shape of the memory encoder) of a frame's
        MemoryFrame, [S·G, M, h, w, C] (k_g / k_l None when GRM / PGM is off).
      streams: S (the batch rows are S·G).
      capacity: T slots.
      size: (H, W) of the padded frames.
    """
    b, m = encoded.v.shape[:2]
    zeros = lambda x: None if x is None else jnp.zeros(x.shape, x.dtype)  # noqa: E731
    slots = (
        lambda x: (
            None
            if x is None
            else jnp.zeros(  # noqa: E731
                (b, m, capacity, *x.shape[2:]), x.dtype
            )
        )
    )
    return Memory(
        k_g=slots(encoded.k_g),
        v=slots(encoded.v),
        schedule=empty_schedule(capacity),
        first_frame=jnp.full((b // streams * m,), NOT_JOINED, jnp.int32),
        prev=PrevFrame(k_l=zeros(encoded.k_l), mask=jnp.zeros((b, m, *size), jnp.float32)),
        reference=Reference(v=zeros(encoded.v), mask=jnp.zeros((b, m, *size), jnp.float32)),
    )


def per_row(x, streams: int, objects_per_group: int):
    """Per-object values [O, ...] -> per batch row [S·G, M, ...] (the same for every stream)."""
    grouped = x.reshape(-1, objects_per_group, *x.shape[1:])
    return jnp.tile(grouped, (streams,) + (1,) * (grouped.ndim - 1))


def joined(memory: Memory):
    """bool [O]: objects whose first mask has arrived."""
    return memory.first_frame != NOT_JOINED


def pool(memory: Memory, streams: int) -> MemoryPool:
    """GRM's view of the memory: MemoryPool with valid [S·G, M, T]."""
    valid = readable(memory.schedule, memory.first_frame)
    return MemoryPool(k_g=memory.k_g, v=memory.v, valid=per_row(valid, streams, memory.v.shape[1]))


def write(
    memory: Memory, encoded: MemoryFrame, masks, t, *, mem_every: int, given, streams: int
) -> Memory:
    """Writes frame t into the memory after it was segmented.

    Args:
      memory: the memory before frame t.
      encoded: frame t through the memory encoder with its final masks, [S·G, M, h, w, C].
      masks: those final soft masks, float32 [S·G, M, H, W] (PGM's previous mask for t + 1).
      t: int32 scalar, the frame index.
      mem_every: keep every mem_every-th frame.
      given: bool [O], objects whose mask was given on frame t; those not joined yet join at t,
        which becomes their reference frame for ORM (the frame where each object is first
        annotated, spec; a mask given again later, e.g. a correction, leaves it).
      streams: S.
    """
    annotated = jnp.any(given)
    slot = choose_slot(memory.schedule)
    schedule = record(memory.schedule, slot, t, keep_frame(t, mem_every, annotated), annotated)
    put = lambda pool_x, x: None if pool_x is None else pool_x.at[:, :, slot].set(x)  # noqa: E731
    joins = given & ~joined(memory)  # [O]
    join_rows = per_row(joins, streams, memory.v.shape[1])  # [S·G, M]
    new_ref = lambda old, x: jnp.where(  # noqa: E731
        join_rows.reshape(join_rows.shape + (1,) * (x.ndim - 2)), x.astype(old.dtype), old
    )
    return Memory(
        k_g=put(memory.k_g, encoded.k_g),
        v=put(memory.v, encoded.v),
        schedule=schedule,
        first_frame=jnp.where(joins, t, memory.first_frame),
        prev=PrevFrame(k_l=encoded.k_l, mask=masks),
        reference=Reference(
            v=new_ref(memory.reference.v, encoded.v),
            mask=new_ref(memory.reference.mask, masks),
        ),
    )
