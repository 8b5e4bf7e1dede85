"""J&F scoring speed of a DAVIS-size 480p results folder: ours against vos-benchmark, one run.

    python -m benchmarks.jf_speed                      # data in /tmp/jf_speed (written once)
    python -m benchmarks.jf_speed --old --check        # + ours before issue 13, + equality checks
    python -m benchmarks.jf_speed --sequences 1 --repeats 1  # a quick check, in /tmp/jf_speed_1

Writes a synthetic DAVIS-size results folder at 480p×854 (`--data`, reused when there):
30 sequences of 34 to 104 frames (2,010 in all), 1 to 3 objects each: star-shaped blobs that
move, turn and change shape, later ones drawn over earlier ones; the "results" are the same
blobs a few pixels off in position, size and shape, now and then lost for a frame or joined by
a small false blob (J ≈ 0.88, F ≈ 0.93). Layout: `<data>/davis/Annotations/480p/<seq>/*.png`,
`<data>/davis/ImageSets/2017/val.txt`, `<data>/results/<seq>/*.png` (indexed PNGs).
`--sequences N` writes and scores only the first N of the 30 (a quick check of the script, not
a measurement; default `--data` /tmp/jf_speed_N).

Times each scorer as its own command in a fresh Python process, `--repeats` times interleaved:
wall seconds of the command and of the scoring call inside it, and CPU seconds (user + system)
of the command with every process it started (this process is a child subreaper, so the
forkserver and pool workers that outlive their parent are reaped and counted here):

* ours: `lcm_jax.metrics.evaluate_davis(..., workers=W)` for `--workers` (default: 1 and the
  library's default for this folder, one process per CPU here);
* ours before issue 13 (`--old`): the scorer of commit 833b35e (`old_evaluate_sequence`:
  masks of all frames at once, boundaries dilated by thresholding SciPy's distance transform),
  one process;
* vos-benchmark 0.1.0 (`vos_benchmark.benchmark.benchmark`, a `multiprocessing.Pool` of W
  processes over sequences, OpenCV's dilation), run by `--vosb-python` (default
  `/tmp/vosb-venv/bin/python`, a venv made with `python -m venv` and
  `pip install opencv-python-headless scikit-image pillow tqdm` + `pip install --no-deps
  vos-benchmark==0.1.0`); skipped with a note when that Python cannot import it.

`--check` compares ours per frame, object by object, bit for bit: with the old scorer (`--old`)
and with vos-benchmark's `Evaluator` (the toolkit's f_measure with `cv2.dilate` and
`skimage.morphology.disk`, run by `--vosb-python`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 480, 854
# Frames per sequence, like DAVIS 2017 val's 30 sequences (2,010 frames in all).
LENGTHS = (69, 50, 80, 84, 90, 75, 50, 104, 90, 60, 66, 52, 50, 90, 78,
           50, 81, 34, 50, 47, 49, 50, 79, 40, 80, 100, 79, 43, 40, 100)  # fmt: skip


def blob(shape: tuple[int, int], center, radius: float, harmonics) -> np.ndarray:
    """A star-shaped blob bool [H, W]: rho <= radius · (1 + Σ a cos(k θ + φ)), drawn only in
    its bounding box."""
    h, w = shape
    reach = radius * (1 + sum(abs(a) for _, a, _ in harmonics))
    cy, cx = center
    y0, y1 = max(int(cy - reach) - 1, 0), min(int(cy + reach) + 2, h)
    x0, x1 = max(int(cx - reach) - 1, 0), min(int(cx + reach) + 2, w)
    out = np.zeros(shape, bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    r = radius * (1 + sum(a * np.cos(k * theta + phi) for k, a, phi in harmonics))
    out[y0:y1, x0:x1] = np.hypot(dy, dx) <= r
    return out


class _Object:
    """One object's motion: a centre on a smooth path, a radius and harmonics that drift."""

    def __init__(self, rng: np.random.Generator, length: int):
        self.c0 = rng.uniform([0.25 * HEIGHT, 0.2 * WIDTH], [0.75 * HEIGHT, 0.8 * WIDTH])
        self.v = rng.normal(0, 1.5, 2)  # pixels per frame
        self.wobble = rng.uniform(5, 30, 2), rng.uniform(0.02, 0.1, 2), rng.uniform(0, 6, 2)
        self.r0, self.dr = rng.uniform(35, 130), rng.uniform(-0.3, 0.3) / length
        self.harm = [(k, rng.uniform(0.03, 0.25 / k**0.5), rng.uniform(0, 6)) for k in (2, 3, 5)]
        self.spin = rng.normal(0, 0.03, 3)

    def at(self, t: int, jitter=None):
        amp, freq, phase = self.wobble
        center = self.c0 + self.v * t + amp * np.sin(freq * t + phase)
        radius = self.r0 * (1 + self.dr * t)
        harm = [(k, a, phi + s * t) for (k, a, phi), s in zip(self.harm, self.spin, strict=True)]
        if jitter is not None:  # the "prediction": a little off in every respect
            center = center + jitter.normal(0, 2.0, 2)
            radius = radius * jitter.uniform(0.93, 1.05)
            harm = [
                (k, a * jitter.uniform(0.7, 1.3), phi + jitter.normal(0, 0.1)) for k, a, phi in harm
            ]
        return center, radius, harm


def synthetic_sequence(seed: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and prediction uint8 [length, H, W] of one sequence (1 to 3 objects)."""
    rng = np.random.default_rng(seed)
    objects = [_Object(rng, length) for _ in range(rng.integers(1, 4))]
    gt = np.zeros((length, HEIGHT, WIDTH), np.uint8)
    pred = np.zeros_like(gt)
    for t in range(length):
        for k, obj in enumerate(objects, start=1):  # later objects occlude earlier ones
            gt[t][blob((HEIGHT, WIDTH), *obj.at(t))] = k
            if t == 0 or rng.random() > 0.03:  # now and then lost for a frame
                pred[t][blob((HEIGHT, WIDTH), *obj.at(t, jitter=rng))] = k
            if t > 0 and rng.random() < 0.05:  # a small false blob
                spot = rng.uniform([0, 0], [HEIGHT, WIDTH])
                pred[t][blob((HEIGHT, WIDTH), spot, rng.uniform(4, 15), [(2, 0.1, 0.0)])] = k
    pred[0] = gt[0]  # the given first frame
    return gt, pred


# --- Ours before issue 13 (commit 833b35e): all masks at once, SciPy's distance transform ---


def old_evaluate_sequence(gt_labels: np.ndarray, pred_labels: np.ndarray):
    """The scorer as it was: masks [O, N, H, W] of every object and frame, vectorised J, and
    each boundary dilated by thresholding `scipy.ndimage.distance_transform_edt` at r."""
    from scipy import ndimage

    from lcm_jax.metrics import davis

    num_objects = int(np.where(gt_labels[0] == 255, 0, gt_labels[0]).max())
    ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1, 1)
    gt = np.where(gt_labels[1:-1] == 255, 0, gt_labels[1:-1])[None] == ids
    pred = np.where(pred_labels[1:-1] == 255, 0, pred_labels[1:-1])[None] == ids
    lead, (h, w) = gt.shape[:-2], gt.shape[-2:]
    b_pred = davis.seg2bmap(pred).reshape(-1, h, w)
    b_gt = davis.seg2bmap(gt).reshape(-1, h, w)
    radius = davis.bound_pixels(h, w)

    def dilate(bmaps):
        out = np.zeros_like(bmaps, dtype=bool)
        for k in np.flatnonzero(bmaps.any(axis=(1, 2))):
            out[k] = ndimage.distance_transform_edt(~bmaps[k]) <= radius
        return out

    dil_pred, dil_gt = dilate(b_pred), dilate(b_gt)
    n_pred = b_pred.sum(axis=(1, 2)).astype(np.float64)
    n_gt = b_gt.sum(axis=(1, 2)).astype(np.float64)
    pred_match = (b_pred & dil_gt).sum(axis=(1, 2))
    gt_match = (b_gt & dil_pred).sum(axis=(1, 2))
    precision = np.where(n_pred == 0, 1.0, pred_match / np.maximum(n_pred, 1))
    recall = np.where(n_gt == 0, 1.0, gt_match / np.maximum(n_gt, 1))
    total = precision + recall
    f = np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1, total))
    inter = np.sum(gt & pred, axis=(-2, -1))
    union = np.sum(gt | pred, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return j, f.reshape(lead)


# --- The folder --------------------------------------------------------------------------


def write_folder(data: Path, seed: int = 0, lengths: tuple[int, ...] = LENGTHS) -> list[str]:
    """Writes (once) the synthetic DAVIS folder and results under `data`, one sequence of each
    length; the sequence names."""
    from lcm_jax.input_pipeline import video_io

    names = [f"seq{i:02d}" for i in range(len(lengths))]
    stamp = data / "complete.json"
    want = {"seed": seed, "lengths": lengths, "size": [HEIGHT, WIDTH]}
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(want)):
        return names
    print(f"writing {sum(lengths)} frames into {data} ...", file=sys.stderr)
    for i, (name, length) in enumerate(zip(names, lengths, strict=True)):
        gt, pred = synthetic_sequence(seed * 1000 + i, length)
        for t in range(length):
            video_io.write_label_png(data / "davis/Annotations/480p" / name / f"{t:05d}.png", gt[t])
            video_io.write_label_png(data / "results" / name / f"{t:05d}.png", pred[t])
    (data / "davis/ImageSets/2017").mkdir(parents=True, exist_ok=True)
    (data / "davis/ImageSets/2017/val.txt").write_text("\n".join(names) + "\n")
    stamp.write_text(json.dumps(want))
    return names


# --- The commands timed (each run as `python -m benchmarks.jf_speed --child ...`) ----------


def child_ours(data: Path, names: list[str], workers: int | None) -> dict:
    from lcm_jax.metrics import report

    start = time.perf_counter()
    scores = report.evaluate_davis(data / "davis", data / "results", names, workers=workers)
    return {"inner_wall": time.perf_counter() - start, "jf": scores.global_scores()["J&F-Mean"]}


def child_old(data: Path, names: list[str]) -> dict:
    from lcm_jax.input_pipeline import video_io
    from lcm_jax.metrics import davis, report

    start = time.perf_counter()
    per_frame, objects = {}, []
    for seq in names:
        paths = video_io.davis_annotations(data / "davis", seq)
        j, f = old_evaluate_sequence(*report.read_sequence(data / "results", seq, paths))
        per_frame[f"{seq}/J"], per_frame[f"{seq}/F"] = j, f
        objects += [(davis.statistics(j[k]), davis.statistics(f[k])) for k in range(len(j))]
    inner = time.perf_counter() - start
    np.savez(data / "old_per_frame.npz", **per_frame)
    j_mean = np.mean([o[0][0] for o in objects])
    f_mean = np.mean([o[1][0] for o in objects])
    return {"inner_wall": inner, "jf": (j_mean + f_mean) / 2}


VOSB_TIMED = """
import json, sys, time
from vos_benchmark.benchmark import benchmark
start = time.perf_counter()
jf, j, f, _ = benchmark([sys.argv[1]], [sys.argv[2]], num_processes=int(sys.argv[3]), verbose=False)
print(json.dumps({"inner_wall": time.perf_counter() - start, "jf": jf[0] / 100}))
"""

# Per-frame J and F of every object with vos-benchmark's Evaluator (frames 1..N-2, as its
# benchmark feeds them); an object's lists start at the first frame it appears in.
VOSB_PER_FRAME = """
import os, sys
import numpy as np
from PIL import Image
from vos_benchmark.evaluator import Evaluator
gt_root, res_root, out = sys.argv[1:4]
arrays = {}
for seq in sorted(os.listdir(gt_root)):
    frames = sorted(os.listdir(os.path.join(gt_root, seq)))[1:-1]
    ev = Evaluator(name=seq)
    for name in frames:
        gt = np.array(Image.open(os.path.join(gt_root, seq, name)))
        mask = np.array(Image.open(os.path.join(res_root, seq, name)))
        ev.feed_frame(mask, gt)
    for k in ev.object_iou:
        arrays[f"{seq}/{k}/J"] = np.array(ev.object_iou[k], np.float64)
        arrays[f"{seq}/{k}/F"] = np.array(ev.boundary_f[k], np.float64)
np.savez(out, **arrays)
"""


# --- Timing ------------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Orphaned descendants (a forkserver, pool workers) are re-parented to this process, so
    their CPU time reaches RUSAGE_CHILDREN once `reap` waits for them (Linux only)."""
    try:
        return (
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
        )  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def timed(argv: list[str]) -> dict:
    """Runs a command that prints one JSON line last; its wall and CPU seconds added."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    reap()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall": wall, "cpu": cpu}


def vosb_available(python: str) -> bool:
    if not Path(python).exists():
        return False
    probe = subprocess.run([python, "-c", "import vos_benchmark.benchmark"], capture_output=True)
    return probe.returncode == 0


# --- Checks ------------------------------------------------------------------------------


def ours_per_frame(data: Path, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from lcm_jax.input_pipeline import video_io
    from lcm_jax.metrics import davis, report

    out = {}
    for seq in names:
        paths = video_io.davis_annotations(data / "davis", seq)
        out[seq] = davis.evaluate_sequence(*report.read_sequence(data / "results", seq, paths))
    return out


def check_old(ours: dict, path: Path) -> str:
    old = np.load(path)
    frames = sum(j.size for j, _ in ours.values())
    bad = [
        seq
        for seq, (j, f) in ours.items()
        if not (np.array_equal(old[f"{seq}/J"], j) and np.array_equal(old[f"{seq}/F"], f))
    ]
    verdict = "all equal" if not bad else f"DIFFER in {bad}"
    return f"old scorer: {frames} object-frames, {verdict}"


def check_vosb(ours: dict, python: str, data: Path) -> str:
    out = data / "vosb_per_frame.npz"
    gt_root, res_root = data / "davis/Annotations/480p", data / "results"
    subprocess.run([python, "-c", VOSB_PER_FRAME, gt_root, res_root, out], check=True)
    ref = np.load(out)
    compared, bad = 0, []
    for seq, (j, f) in ours.items():
        for k in range(j.shape[0]):
            rj, rf = ref[f"{seq}/{k + 1}/J"], ref[f"{seq}/{k + 1}/F"]
            n = rj.size  # frames since the object first appeared; before: both masks empty
            same = np.array_equal(j[k, -n:], rj) and np.array_equal(f[k, -n:], rf)
            same &= bool(
                (j[k, : j.shape[1] - n] == 1).all() and (f[k, : j.shape[1] - n] == 1).all()
            )
            compared += j.shape[1]
            if not same:
                bad.append(f"{seq}_{k + 1}")
        if len([key for key in ref.files if key.startswith(f"{seq}/")]) != 2 * j.shape[0]:
            bad.append(f"{seq} (object count)")
    verdict = "all equal" if not bad else f"DIFFER in {bad}"
    return f"vos-benchmark's Evaluator: {compared} object-frames, {verdict}"


# --- Main --------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, help="default: /tmp/jf_speed (/tmp/jf_speed_N with --sequences N)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="*", help="ours' process counts (default: 1 and the default)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--sequences",
        type=int,
        default=len(LENGTHS),
        choices=range(1, len(LENGTHS) + 1),
        metavar="N",
        help=f"only the first N of the {len(LENGTHS)} sequences (a quick check)",
    )
    parser.add_argument("--old", action="store_true", help="also time ours before issue 13")
    parser.add_argument("--check", action="store_true", help="per-frame equality checks")
    parser.add_argument("--vosb-python", default="/tmp/vosb-venv/bin/python")
    parser.add_argument("--child", choices=("ours", "old"), help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    lengths = LENGTHS[: args.sequences]
    quick = "" if args.sequences == len(LENGTHS) else f"_{args.sequences}"
    args.data = args.data or Path(f"/tmp/jf_speed{quick}")
    names = [f"seq{i:02d}" for i in range(len(lengths))]
    if args.child == "ours":
        print(json.dumps(child_ours(args.data, names, args.child_workers or None)))
        return
    if args.child == "old":
        print(json.dumps(child_old(args.data, names)))
        return

    from lcm_jax.metrics import report

    names = write_folder(args.data, lengths=lengths)
    frames = sum(lengths)
    default = report.default_workers(frames, len(names))
    workers = args.workers or sorted({1, default})
    vosb = vosb_available(args.vosb_python)
    if not vosb:
        print(f"note: {args.vosb_python} cannot import vos_benchmark: its row is skipped")
    subreaper = become_subreaper()
    load = os.getloadavg()[0]
    me = [sys.executable, "-m", "benchmarks.jf_speed", "--data", str(args.data)]
    me += ["--sequences", str(args.sequences)]
    commands = {}
    for w in workers:
        commands[f"ours, workers={w}"] = [*me, "--child", "ours", "--child-workers", str(w)]
    if vosb:
        roots = [str(args.data / "davis/Annotations/480p"), str(args.data / "results")]
        for w in sorted({max(workers), default}):
            commands[f"vos-benchmark, {w} processes"] = [
                *(args.vosb_python, "-c", VOSB_TIMED),
                *roots,
                str(w),
            ]
    runs = {label: [] for label in commands}
    if args.old:
        runs["ours before issue 13, 1 process"] = [timed([*me, "--child", "old"])]
    for _ in range(args.repeats):  # interleaved, so that load from other jobs hits all alike
        for label, command in commands.items():
            runs[label].append(timed(command))

    print(
        f"\n{frames} frames, {len(names)} sequences at {HEIGHT}x{WIDTH}; "
        f"{len(os.sched_getaffinity(0))} CPUs available, load average {load:.1f} before; "
        f"orphans' CPU counted: {subreaper}; median of {args.repeats} runs (old: 1)\n"
    )
    print(
        "| scorer | wall s (command) | wall s (scoring) | CPU s (all processes) | frames/s | J&F |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, results in runs.items():
        wall, inner, cpu = (
            statistics.median(r[k] for r in results) for k in ("wall", "inner_wall", "cpu")
        )
        jf = results[0]["jf"]
        print(
            f"| {label} | {wall:.1f} | {inner:.1f} | {cpu:.1f} | {frames / wall:.0f} | {jf:.4f} |"
        )
    print("\nall runs (wall s, CPU s):")
    for label, results in runs.items():
        print(f"  {label}: {[(round(r['wall'], 1), round(r['cpu'], 1)) for r in results]}")

    if args.check:
        ours = ours_per_frame(args.data, names)
        if args.old:
            print(check_old(ours, args.data / "old_per_frame.npz"))
        if vosb:
            print(check_vosb(ours, args.vosb_python, args.data))


if __name__ == "__main__":
    main()
