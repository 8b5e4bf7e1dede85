"""What the command-line tools (`evaluate`, `segment`, `convert`) share: flags and exit statuses.

Exit statuses:
  0    done.
  1    some videos failed; each is listed on stderr with its message, the others were written.
  2    an input that cannot be used, as one line "error: ..." on stderr before anything is
       segmented: a bad flag, a missing checkpoint, data folder, frames or mask, a --model that
       does not fit the weights, an output folder holding another run's results, a file or
       folder that cannot be read or written (the line names it and says why).
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM. Temporary files are removed; the same
       command resumes. `exit` then ends the process at once (see there).

A warning (a first-frame mask without objects) is one line "warning: ..." on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from lcm_jax import checkpoints, files
from lcm_jax.inference.engine import InferenceOptions

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
# What a command's inputs raise: DatasetError, CheckpointError, ManifestError, DistributedError
# and ConversionError are ValueErrors; a missing checkpoint is a FileNotFoundError, an output
# that appeared meanwhile a FileExistsError, an unreadable checkpoint or an output under a file
# or in a folder without write permission another OSError.
INPUT_ERRORS = (ValueError, OSError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every clean-up runs as for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --model."""
    parser.add_argument("--checkpoint", required=True, help="variables dir or training workdir")
    parser.add_argument(
        "--model",
        default=None,
        choices=checkpoints.MODEL_NAMES,
        help="override the model config stored with the checkpoint (needed only for "
        "checkpoints written before configs were stored)",
    )


def add_inference_flags(parser: argparse.ArgumentParser) -> None:
    """The InferenceOptions flags, and --overwrite."""
    parser.add_argument("--mem_every", type=int, default=5)
    parser.add_argument(
        "--max_memory_frames", type=int, default=None, help="memory slots (default: unbounded)"
    )
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument(
        "--shorter_side", type=int, default=None, help="internal resolution (default: original)"
    )
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    parser.add_argument("--soft", action="store_true", help="also write probabilities (.npz)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="empty an output folder that holds another run's results and start afresh",
    )


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    """The InferenceOptions of the `add_inference_flags` flags."""
    return InferenceOptions(
        mem_every=args.mem_every,
        max_memory_frames=args.max_memory_frames,
        flip=args.flip,
        shorter_side=args.shorter_side,
        dtype=args.dtype,
        soft_output=args.soft,
    )


def report_failures(failures: Sequence[tuple[str, str]]) -> int:
    """Lists the failed videos on stderr; EXIT_FAILED if there are any, else EXIT_OK."""
    if not failures:
        return EXIT_OK
    print(f"{len(failures)} video(s) failed:", file=sys.stderr)
    for name, message in failures:
        print(f"  {name}: {message}", file=sys.stderr)
    return EXIT_FAILED


def error_line(error: Exception) -> str:
    """The line "error: ..." of an input error: its message (a ConversionError's one-line
    summary), or for an OSError of the system (whose str is "[Errno 20] Not a directory:
    'PATH'") the path and the reason."""
    if isinstance(error, OSError):
        return f"error: {files.describe(error)}"
    return f"error: {getattr(error, 'summary', error)}"


def run(body: Callable[[], int]) -> int:
    """Runs a command's body: SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main
    thread, warnings print as one line, and the statuses of the module docstring."""
    main_thread = threading.current_thread() is threading.main_thread()  # signals go there
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _print_warning
            return body()
    except INPUT_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as e:
        what = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
        print(f"\ninterrupted ({what}); run the same command again to resume", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def exit(status: int) -> NoReturn:  # noqa: A001 (the command's `sys.exit`)
    """Ends a command's process (`if __name__ == "__main__": cli.exit(main())`). An interrupted
    run (130, 143) ends without the interpreter's finalisation: its clean-up has run, and work
    that XLA still had in flight (a compilation cut short) crashed the finalisation now and then
    (a segmentation fault, status 139, after "interrupted"; 1 in 8 SIGTERMs during the first
    compilation of `segment`)."""
    if status in (EXIT_SIGINT, EXIT_SIGTERM):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
