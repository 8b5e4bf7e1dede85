"""Input pipeline configs: which data, which training stage, and every augmentation knob.

`arg` is "<data>,<stage>[,tiny]": data in {synthetic, davis, youtube, davis+youtube, static},
stage in {pretrain, main, sequence} (section 3.5). pretrain reads static image sets ("static",
or the synthetic generator's static images); main/sequence read videos. "tiny" shrinks crops to
64x64 and the synthetic set to a few small videos (tests, CPU demo).

    from lcm_jax.configs import data
    from lcm_jax.input_pipeline import pipeline
    cfg = data.get_config("davis,main")
    it = pipeline.create_train_iterator(cfg, stage="main", batch_size=4, seed=0)

For the tf.data feed (`feed`, below), prepare real sets once (TFDS, ArrayRecord files; the NumPy
feed reads the folders in manual_dir as they are) with
    python -m lcm_jax.input_pipeline.prepare --dataset davis17 --manual_dir ~/data/vos/DAVIS \
        --data_dir ~/tensorflow_datasets
"""

import os
import tempfile

import ml_collections

DATA_NAMES = ("synthetic", "davis", "youtube", "davis+youtube", "static")
STAGES = ("pretrain", "main", "sequence")
FEEDS = ("tf.data", "numpy")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the data config for `arg` = "<data>,<stage>[,tiny]" (default "synthetic,main")."""
    parts = (arg or "synthetic,main").split(",")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "tiny"):
        raise ValueError(f"data config arg must be '<data>,<stage>[,tiny]', got {arg!r}")
    name, stage = parts[0], parts[1]
    tiny = len(parts) == 3
    if name not in DATA_NAMES:
        raise ValueError(f"data name must be one of {DATA_NAMES}, got {name!r} (arg {arg!r})")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r} (arg {arg!r})")
    if stage == "pretrain" and name not in ("static", "synthetic"):
        raise ValueError(
            f"the pretrain stage reads static images ('static' or 'synthetic'), got {name!r}"
        )
    if stage != "pretrain" and name == "static":
        raise ValueError(f"stage {stage!r} reads videos; 'static' is for pretrain")

    c = ml_collections.ConfigDict()
    c.name = name
    c.stage = stage

    # Where the data lives. manual_dir holds the extracted folders, one per set, in the layout
    # the synthetic generator also writes: DAVIS/ (DAVIS 2017 trainval), YouTube/ (train/,
    # valid/, meta.json), static/ (image/mask sets). data_dir is the TFDS data dir with the
    # prepared (ArrayRecord) builders.
    home = os.path.expanduser("~")
    if name == "synthetic":  # in the temporary folder ($TMPDIR, else /tmp)
        c.manual_dir = os.path.join(tempfile.gettempdir(), "lcm_synthetic", "raw")
        c.data_dir = os.path.join(tempfile.gettempdir(), "lcm_synthetic", "tfds")
    else:
        c.manual_dir = os.path.join(home, "data", "vos")
        c.data_dir = os.path.join(home, "tensorflow_datasets")
    c.davis_resolution = "480p"  # DAVIS config: "480p" | "full_resolution"
    # "davis2017_vos": this package's builder (from manual_dir/DAVIS); "davis": tfds's own
    # `davis` set, prepared by the user in data_dir (read into memory).
    c.davis_builder = "davis2017_vos"
    c.youtube_version = "2019"  # youtube_vos config: "2018" | "2019"
    # Prepare a missing builder from manual_dir on first use (single host; with several hosts run
    # input_pipeline.prepare first). For "synthetic", also generate manual_dir when it is missing.
    # A prepared set is reused, never rebuilt; it records the manual_dir it was prepared from,
    # and another existing manual_dir stops the run (tfds_sets). Delete data_dir to rebuild.
    c.prepare_if_missing = True
    # Clips for the training loop's eval loss: "val" (DAVIS's fully annotated held-out videos)
    # where DAVIS is in the mix, else "train" (YouTube-VOS valid and static sets have no
    # held-out clips); J&F on any split is lcm_jax.evaluate's job.
    has_held_out = name in ("davis", "davis+youtube", "synthetic") and stage != "pretrain"
    c.eval_split = "val" if has_held_out else "train"

    # Synthetic generator (used only when name == "synthetic" and manual_dir is missing).
    c.synthetic = ml_collections.ConfigDict()
    c.synthetic.num_videos = 16  # per layout (DAVIS and YouTube-VOS), train + val
    c.synthetic.num_frames = 24
    c.synthetic.height = 128
    c.synthetic.width = 128
    c.synthetic.seed = 0
    # Difficulty knobs: any field of lcm_jax.input_pipeline.synthetic.Difficulty (defaults there).
    c.synthetic.difficulty = ml_collections.ConfigDict()
    c.synthetic.difficulty.max_objects = 3  # targets per video (1-5)
    c.synthetic.difficulty.num_distractors = 1  # unannotated look-alikes of targets
    c.synthetic.difficulty.leave_prob = 0.25  # an object's path leaves the frame and returns
    c.synthetic.difficulty.late_start_prob = 0.3  # (YouTube layout) an object appears mid-video

    # Clip shape. crop is (H, W): 384x384 for pretrain, the paper's 640x384 (WxH) otherwise.
    c.crop = (384, 384) if stage == "pretrain" else (384, 640)
    c.max_objects = 3  # [choice] objects per clip; a random subset when more, padded + valid mask

    # Frame sampling (section 3.5).
    c.shuffle_order = True  # main: the three frames in random order (False: time order)
    c.min_skip = 1  # sequence: each gap between consecutive clip frames is in [min_skip, max_skip]
    c.max_skip = 5

    # Augmentation. flip: horizontal flip of the whole clip with probability 1/2.
    c.flip = True
    c.color_jitter = False  # per-frame jitter with the four ranges below
    c.brightness = 0.1  # delta added, uniform in [-b, b] (frames in [0, 1])
    c.contrast = 0.1  # factor in [1 - c, 1 + c]
    c.saturation = 0.1  # factor in [1 - s, 1 + s]
    c.hue = 0.02  # delta in [-h, h] (fraction of the hue circle)

    # Pretraining (static images): frames 1 and 2 are random affine copies of frame 0 (also
    # frame 0 when identity_first is False), about the crop centre, then Gaussian blur.
    c.identity_first = True
    c.rotate_deg = 20.0  # rotation uniform in [-r, r] degrees
    c.shear_deg = 10.0  # shear angle uniform in [-s, s] degrees
    c.zoom_range = (0.9, 1.1)  # isotropic zoom factor
    c.translate = 0.1  # shift uniform in [-t, t] times the crop size, per axis
    c.blur_prob = 0.3  # probability that a copy is blurred
    c.blur_sigma = (0.1, 1.5)  # blur standard deviation range, pixels (the kernel covers 3 max)

    # The feed: how clips are read and rendered; both give the same batches (the same plans,
    # rendered by the same function up to float32 rounding) but for JPEG decoding (TF's fast
    # IDCT, Pillow's accurate one: a few levels of 255 per pixel; input_pipeline/numpy_clips.py).
    # "tf.data": records of the prepared TFDS sets (data_dir), rendered by tf.data.
    # "numpy": records read straight from the DAVIS / YouTube-VOS folders (manual_dir; no
    # static sets), rendered by NumPy and Pillow in threads: no TensorFlow needed.
    c.feed = "tf.data"
    # Videos are visited in a fresh seeded permutation each epoch (a full shuffle, reproducible
    # at any step without a shuffle buffer); see input_pipeline/clips.py.
    c.num_parallel_calls = -1  # decode/augment workers; -1 = tf.data.AUTOTUNE / one per CPU
    c.prefetch = 2  # batches rendered ahead

    if tiny:
        c.crop = (64, 64)
        c.synthetic.num_videos = 6
        c.synthetic.num_frames = 12
        c.synthetic.height = 64
        c.synthetic.width = 96
        c.blur_sigma = (0.1, 1.0)
    return c
