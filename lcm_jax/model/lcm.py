"""LCM (section 3.1, Figure 2): encoders, GRM + PGM + ORM, STM's decoder, soft aggregation.

Three entry points, reused by training and inference (call them with `model.apply(variables,
..., method=...)`):

* `encode_query(frame)`: query encoder and projections -> QueryFeatures.
* `encode_memory(frame, masks, valid)`: memory encoder, one pass per object (its mask and the
  other objects' masks summed, clipped to [0, 1]) -> MemoryFrame.
* `segment(frame, memory, prev, reference, valid)`: one frame's soft-aggregated logits
  (`segment_encoded` takes the frame's QueryFeatures instead of the frame):
      y_grm   = GRM(k_g^Q, memory pool)                          eqs. 1-2
      y_local = PGM(k_l^Q, prev) + ORM(v^Q, reference)           eqs. 3-6 and 7-11
      logits  = soft_aggregate(Decoder(concat(y_grm, y_local), res3, res2))
  With PGM and ORM off, y_local = v^Q (STM); with GRM off, y_grm = 0 (Table 4). With
  `local_fusion="residual"` (an option of configs/model.py beyond the spec, whose fusion is
  the default "replace"), y_local = v^Q + PGM(...) + ORM(...).
* `__call__(frames, masks, valid)`: a training clip of section 3.5: frame 0 and its ground truth
  go to memory, frame 1 is predicted, its soft mask is encoded into memory, frame 2 is predicted.

Conventions: frames RGB in [0, 1], [B, H, W, 3] with H, W multiples of 16; masks are soft,
object-major [B, O, H, W]; valid [B, O] marks real (non-padded) objects, O <= max_objects;
h, w = H/16, W/16. Logits are float32 [B, 1 + O, H, W], channel 0 the background, padded objects
at PADDED_LOGIT. Parameters are float32; `dtype` is the compute dtype: values (v) and skips (r3,
r2) are in it, keys (k_g, k_l) in float32 (`attention_dtype="compute"`: in `dtype` too).
"""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from lcm_jax.model.aggregation import soft_aggregate
from lcm_jax.model.decoder import Decoder
from lcm_jax.model.grm import grm_read
from lcm_jax.model.orm import ORM
from lcm_jax.model.pgm import PGM
from lcm_jax.model.projection import Projection
from lcm_jax.model.resnet import RESNET_LAYERS, ResNetEncoder, check_image, scaled

GRID = 16  # stride of res4, the grid of every key and value


@flax.struct.dataclass
class QueryFeatures:
    """Query encoder outputs: k_g, k_l [B, h, w, Ck] (None when off), v [B, h, w, Cv], skips."""

    k_g: Any
    k_l: Any
    v: jax.Array
    r3: jax.Array  # [B, H/8, W/8, C3]
    r2: jax.Array  # [B, H/4, W/4, C2]


@flax.struct.dataclass
class MemoryFrame:
    """One frame encoded per object: k_g, k_l [B, O, h, w, Ck] (None when off),
    v [B, O, h, w, Cv]."""

    k_g: Any
    k_l: Any
    v: jax.Array


@flax.struct.dataclass
class MemoryPool:
    """GRM's pool of T slots: k_g [B, O, T, h, w, Ck] (None without GRM), v [B, O, T, h, w, Cv],
    valid [B, O, T] bool (a slot is read only where valid)."""

    k_g: Any
    v: jax.Array
    valid: jax.Array


@flax.struct.dataclass
class PrevFrame:
    """PGM's frame t-1: its memory local key k_l [B, O, h, w, Ck] (None without PGM) and its soft
    mask [B, O, H, W]."""

    k_l: Any
    mask: jax.Array


@flax.struct.dataclass
class Reference:
    """ORM's reference frame per object: memory value v [B, O, h, w, Cv] and mask [B, O, H, W]."""

    v: jax.Array
    mask: jax.Array


def pool_to_grid(masks, how: str):
    """Masks [..., H, W] -> [..., H/16, W/16]: area average ("area") or maximum ("max")."""
    *lead, height, width = masks.shape
    blocks = masks.reshape(*lead, height // GRID, GRID, width // GRID, GRID)
    return blocks.mean(axis=(-3, -1)) if how == "area" else blocks.max(axis=(-3, -1))


def _flat(x):
    """[B, O, ...] -> [B·O, ...]."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _per_object(x, objects: int):
    """[B, ...] -> [B·O, ...], each frame's features repeated for its O objects."""
    return jnp.repeat(x, objects, axis=0)


def _expect(name: str, x, shape: tuple) -> None:
    if x is None or tuple(x.shape) != tuple(shape):
        got = None if x is None else tuple(x.shape)
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {got}")


class LCM(nn.Module):
    """The LCM network; the fields are configs/model.py's (see there for each [choice])."""

    backbone: str = "resnet50"
    width: float = 1.0
    frozen_bn: bool = True
    zero_init_mask_stem: bool = True
    use_grm: bool = True
    use_pgm: bool = True
    use_orm: bool = True
    scale_keys: bool = True
    grm_chunk_size: int = 0
    pgm_top_k: int = 8
    position_map_scale: str = "n"
    mask_pooling: str = "area"
    local_fusion: str = "replace"
    orm_shared_g: bool = False
    orm_reduction: int = 16
    max_objects: int = 3
    dtype: str = "float32"
    attention_dtype: str = "float32"

    @property
    def key_dim(self) -> int:
        return scaled(128, self.width)

    @property
    def value_dim(self) -> int:
        return scaled(512, self.width)

    def setup(self):
        choices = {
            "backbone": (self.backbone, tuple(RESNET_LAYERS)),
            "position_map_scale": (self.position_map_scale, ("n", "none")),
            "mask_pooling": (self.mask_pooling, ("area", "max")),
            "local_fusion": (self.local_fusion, ("replace", "residual")),
            "dtype": (self.dtype, ("float32", "bfloat16", "float16")),
            "attention_dtype": (self.attention_dtype, ("float32", "compute")),
        }
        for field, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"model config {field} must be one of {allowed}, got {value!r}")
        dtype = jnp.dtype(self.dtype)
        key_dtype = dtype if self.attention_dtype == "compute" else jnp.float32
        encoder = dict(
            backbone=self.backbone, width=self.width, frozen_bn=self.frozen_bn, dtype=dtype
        )
        self.query_encoder = ResNetEncoder(**encoder)
        self.memory_encoder = ResNetEncoder(
            **encoder, mask_stem=True, zero_init_mask_stem=self.zero_init_mask_stem
        )
        heads = dict(
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            global_key=self.use_grm,
            local_key=self.use_pgm,
            dtype=dtype,
            key_dtype=key_dtype,
        )
        self.query_proj = Projection(**heads)
        self.memory_proj = Projection(**heads)
        if self.use_pgm:
            self.pgm = PGM(self.key_dim, self.pgm_top_k, self.position_map_scale, key_dtype)
        if self.use_orm:
            self.orm = ORM(self.value_dim, self.orm_reduction, self.orm_shared_g, dtype)
        self.decoder = Decoder(scaled(256, self.width), dtype)

    # -- input checks: raised while tracing, before anything is compiled ----------------------

    def _check_objects(self, masks, valid, frame_shape):
        b, height, width = frame_shape[0], frame_shape[1], frame_shape[2]
        if valid.ndim != 2 or valid.shape[0] != b:
            raise ValueError(f"valid must have shape [B={b}, O], got {tuple(valid.shape)}")
        objects = valid.shape[1]
        if objects > self.max_objects:
            raise ValueError(
                f"valid has {objects} objects, more than max_objects={self.max_objects} "
                f"(shape {tuple(valid.shape)}); split the objects into groups"
            )
        _expect("masks", masks, (b, objects, height, width))
        return objects

    # -- entry points ----------------------------------------------------------------------------

    def encode_query(self, frame, train: bool = False) -> QueryFeatures:
        """Query encoder + projections of one frame [B, H, W, 3]."""
        check_image("frame", frame)
        r2, r3, r4 = self.query_encoder(frame, train=train)
        k_g, k_l, v = self.query_proj(r4)
        return QueryFeatures(k_g=k_g, k_l=k_l, v=v, r3=r3, r2=r2)

    def encode_memory(
        self, frame, masks, valid, train: bool = False, *, all_masks=None
    ) -> MemoryFrame:
        """Memory encoder per object: frame [B, H, W, 3], soft masks [B, O, H, W], valid [B, O].

        all_masks: float32 [B, H, W], the masks of all the frame's objects summed, when a row
        holds only some of them (the engine's object groups); default: the row's valid masks."""
        check_image("frame", frame)
        objects = self._check_objects(masks, valid, frame.shape)
        masks = masks * valid[:, :, None, None].astype(masks.dtype)
        if all_masks is None:
            all_masks = masks.sum(axis=1)
        else:
            _expect("all_masks", all_masks, masks.shape[:1] + masks.shape[2:])
        others = jnp.clip(all_masks[:, None] - masks, 0.0, 1.0)
        _, _, r4 = self.memory_encoder(
            _per_object(frame, objects), _flat(masks), _flat(others), train=train
        )
        k_g, k_l, v = self.memory_proj(r4)
        unflat = lambda x: None if x is None else x.reshape(-1, objects, *x.shape[1:])  # noqa: E731
        return MemoryFrame(k_g=unflat(k_g), k_l=unflat(k_l), v=unflat(v))

    def segment(
        self,
        frame,
        memory: MemoryPool,
        prev: PrevFrame,
        reference: Reference,
        valid,
        train: bool = False,
    ):
        """Soft-aggregated logits [B, 1 + O, H, W] of one frame; see the module docstring."""
        check_image("frame", frame)
        return self.segment_encoded(self.encode_query(frame, train), memory, prev, reference, valid)

    def segment_encoded(
        self,
        q: QueryFeatures,
        memory: MemoryPool,
        prev: PrevFrame,
        reference: Reference,
        valid,
    ):
        """`segment` of a frame already through the query encoder (`encode_query`), so that
        the encoder can run once for several object groups of the same frame."""
        b, h, w = q.v.shape[:3]
        height, width = h * GRID, w * GRID
        objects = self._check_objects(prev.mask, valid, (b, height, width))
        _expect("reference.mask", reference.mask, (b, objects, height, width))
        _expect("reference.v", reference.v, (b, objects, h, w, self.value_dim))
        if memory.valid.ndim != 3 or memory.valid.shape[:2] != (b, objects):
            raise ValueError(
                f"memory.valid must have shape [{b}, {objects}, T], got {tuple(memory.valid.shape)}"
            )
        slots = memory.valid.shape[2]
        _expect("memory.v", memory.v, (b, objects, slots, h, w, self.value_dim))
        if self.use_grm:
            _expect("memory.k_g", memory.k_g, (b, objects, slots, h, w, self.key_dim))
        if self.use_pgm:
            _expect("prev.k_l", prev.k_l, (b, objects, h, w, self.key_dim))

        v_q = _per_object(q.v, objects)  # [B·O, h, w, Cv]
        if self.use_grm:
            n = h * w
            y_grm = grm_read(
                _per_object(q.k_g, objects).reshape(b * objects, n, -1),
                _flat(memory.k_g).reshape(b * objects, slots * n, -1),
                _flat(memory.v).reshape(b * objects, slots * n, -1),
                jnp.repeat(_flat(memory.valid), n, axis=1),
                scale_keys=self.scale_keys,
                chunk_size=self.grm_chunk_size,
            ).reshape(v_q.shape)
        else:
            y_grm = jnp.zeros_like(v_q)
        local = []
        if self.use_pgm:
            m_prev = pool_to_grid(_flat(prev.mask), self.mask_pooling)
            local.append(self.pgm(_per_object(q.k_l, objects), _flat(prev.k_l), m_prev, v_q))
        if self.use_orm:
            w_ref = pool_to_grid(_flat(reference.mask), self.mask_pooling)
            local.append(self.orm(v_q, _flat(reference.v), w_ref))
        if self.local_fusion == "residual":
            local.append(v_q)
        y_local = sum(local) if local else v_q
        x = jnp.concatenate([y_grm.astype(v_q.dtype), y_local], axis=-1)
        logits = self.decoder(x, q.r3, q.r2)  # the skips once per frame, shared by its objects
        return soft_aggregate(logits.reshape(b, objects, height, width, 2), valid)

    def __call__(self, frames, masks, valid, train: bool = False):
        """A training clip: frames [B, 3, H, W, 3], masks [B, 3, O, H, W] (only frame 0's ground
        truth is used), valid [B, O] -> logits of frames 1 and 2, [B, 2, 1 + O, H, W]."""
        if frames.ndim != 5 or frames.shape[1] != 3 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape [B, 3, H, W, 3], got {tuple(frames.shape)}")
        b, _, height, width, _ = frames.shape
        if masks.ndim != 5 or masks.shape[:2] != (b, 3) or masks.shape[3:] != (height, width):
            raise ValueError(
                f"masks must have shape [B={b}, 3, O, H={height}, W={width}], "
                f"got {tuple(masks.shape)}"
            )
        valid = valid.astype(bool)
        m0 = masks[:, 0] * valid[:, :, None, None].astype(masks.dtype)
        mem0 = self.encode_memory(frames[:, 0], m0, valid, train)
        reference = Reference(v=mem0.v, mask=m0)
        one_slot = lambda x: None if x is None else x[:, :, None]  # noqa: E731
        pool = MemoryPool(
            k_g=one_slot(mem0.k_g), v=one_slot(mem0.v), valid=jnp.ones((*valid.shape, 1), bool)
        )
        logits1 = self.segment(frames[:, 1], pool, PrevFrame(mem0.k_l, m0), reference, valid, train)
        p1 = jax.nn.softmax(logits1, axis=1)[:, 1:]  # soft mask of frame 1 per object
        mem1 = self.encode_memory(frames[:, 1], p1, valid, train)
        two = lambda a, c: None if a is None else jnp.concatenate([a[:, :, None], c[:, :, None]], 2)  # noqa: E731
        pool = MemoryPool(
            k_g=two(mem0.k_g, mem1.k_g),
            v=two(mem0.v, mem1.v),
            valid=jnp.ones((*valid.shape, 2), bool),
        )
        logits2 = self.segment(frames[:, 2], pool, PrevFrame(mem1.k_l, p1), reference, valid, train)
        return jnp.stack([logits1, logits2], axis=1)


# Spatial size of the dummy clip that `init_variables` shows the model; parameter shapes do not
# depend on it.
INIT_SIZE = 64


def build_model(config) -> LCM:
    """LCM from a model config (configs/model.py); unknown fields are a ValueError."""
    fields = dict(config)
    known = {f for f in LCM.__dataclass_fields__ if f not in ("parent", "name")}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown model config fields {unknown}; known fields: {sorted(known)}")
    return LCM(**fields)


def init_variables(config, rng) -> dict:
    """Fresh {"params", "batch_stats"} of the model `config` describes (configs/model.py), from a
    dummy training clip of zeros (INIT_SIZE², every object valid). Wrap it in `jax.eval_shape`
    for the shapes alone, or in `jax.jit(..., out_shardings=...)` to create it sharded."""
    net = config if isinstance(config, LCM) else build_model(config)
    s, o = INIT_SIZE, net.max_objects
    variables = net.init(
        rng, jnp.zeros((1, 3, s, s, 3)), jnp.zeros((1, 3, o, s, s)), jnp.ones((1, o), bool)
    )
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
