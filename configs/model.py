"""The LCM network's config: the paper's ResNet-50 model and a tiny one for tests.

Every detail the paper leaves open (a **[choice]** of the project's design spec, not part of the
repository) is a field here, marked `[choice]`.

    from lcm_jax.configs import model
    from lcm_jax.model import build_model
    cfg = model.get_config("paper")   # or "tiny"
    net = build_model(cfg)
"""

import ml_collections

# The paper's Table 4, in its row order: variant -> (use_grm, use_pgm, use_orm).
TABLE4 = {
    "lcm": (True, True, True),
    "no_pgm": (True, False, True),
    "no_orm": (True, True, False),
    "stm": (True, False, False),
    "no_grm": (False, True, True),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the model config; `arg` is "paper" (default) or "tiny"."""
    size = arg or "paper"
    if size not in ("paper", "tiny"):
        raise ValueError(f"model config arg must be 'paper' or 'tiny', got {arg!r}")
    c = ml_collections.ConfigDict()
    # Encoders. Projection widths are key 128·width, value 512·width, decoder 256·width.
    c.backbone = "resnet50"  # resnet18 | resnet34 | resnet50
    c.width = 1.0  # channel multiplier of the backbone, projections and decoder
    c.frozen_bn = True  # [choice] BatchNorm uses its running statistics, also in training
    c.zero_init_mask_stem = True  # [choice] conv1_m and conv1_o start at zero
    # Table 4 switches.
    c.use_grm = True
    c.use_pgm = True
    c.use_orm = True
    # GRM.
    c.scale_keys = True  # [choice] 1/sqrt(key_dim) in eq. 1, as STM's code
    c.grm_chunk_size = 0  # memory positions per chunk of the online-softmax read; 0 = plain read
    # PGM.
    c.pgm_top_k = 8
    c.position_map_scale = "n"  # [choice] "n": P multiplied by N (uniform response = 1) | "none"
    c.mask_pooling = "area"  # [choice] masks to the stride-16 grid: "area" average | "max"
    # Fusion: "replace": y_pgm + y_orm take the place of v_q (the paper's Figure 2) | "residual":
    # v_q + y_pgm + y_orm (PGM and ORM add to STM's input instead of replacing it).
    c.local_fusion = "replace"  # [choice]
    # ORM.
    c.orm_shared_g = False  # [choice] g_q and g_f are two separate 1x1 convs
    c.orm_reduction = 16  # [choice] SE reduction ratio
    # Objects and precision.
    c.max_objects = 3  # [choice]
    c.dtype = "float32"  # compute dtype ("bfloat16" on accelerators); params stay float32
    # Keys (Key-G, Key-L and their projections, PGM's f_n): "float32" whatever `dtype` is, so
    # that GRM's and PGM's affinities see unrounded keys (their softmax is float32 always), or
    # "compute" (`dtype`). Only bf16/fp16 models differ; benchmarks/bf16_numerics.py measures it.
    c.attention_dtype = "float32"
    if size == "tiny":
        c.backbone = "resnet18"
        c.width = 0.125
        c.pgm_top_k = 4
    return c
