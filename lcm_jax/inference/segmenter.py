"""A model ready to segment: its config, weights and inference options, and where they came from.

    segmenter = Segmenter.from_checkpoint("workdir", InferenceOptions(flip=True))
    results = list(segmenter.engine.run(video))  # the Engine, made on first use
    segmenter.identity()               # what a results folder's manifest records of it

`from_checkpoint` reads the model config stored with the checkpoint (`model` overrides it, and
is needed for checkpoints written before configs were stored; see
`lcm_jax.checkpoints.resolve_model_config`). Weights made in memory (an untrained model, a
training loop's) become a Segmenter directly, with `checkpoint` None.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping

from lcm_jax import checkpoints
from lcm_jax.inference.engine import Engine, InferenceOptions
from lcm_jax.inference.manifest import weights_sha256


@dataclasses.dataclass
class Segmenter:
    """model_config: configs/model.py fields; variables: {"params", "batch_stats"} (host or
    device arrays); checkpoint, step: where the variables were read from, if anywhere."""

    model_config: Mapping
    variables: Mapping
    options: InferenceOptions = InferenceOptions()
    checkpoint: str | None = None
    step: int | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        options: InferenceOptions | None = None,
        model: str | None = None,
    ) -> Segmenter:
        """Raises FileNotFoundError, checkpoints.CheckpointError (ModelMismatchError)."""
        config, variables = checkpoints.load_model(path, model)
        step = checkpoints.checkpoint_step(path)
        options = options or InferenceOptions()
        return cls(config, variables, options, os.path.abspath(path), step)

    @functools.cached_property
    def engine(self) -> Engine:
        return Engine(self.model_config, self.variables, self.options)

    def identity(self) -> dict:
        """The manifest's checkpoint, model_config and inference entries."""
        return {
            "checkpoint": {
                "path": self.checkpoint,
                "step": self.step,
                "weights_sha256": weights_sha256(self.variables),
            },
            "model_config": dict(self.model_config),
            "inference": dataclasses.asdict(self.options),
        }
