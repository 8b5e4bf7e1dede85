"""Convert LCM weights between PyTorch state_dicts and Orbax checkpoints.

    # ImageNet ResNet-50 from torchvision into both encoders, the rest freshly initialised
    python -m lcm_jax.convert --from torch --to orbax resnet50.pth resnet50/ --layout torchvision
    # the official STM release (PGM and ORM off)
    python -m lcm_jax.convert --from torch --to orbax STM_weights.pth stm/ --layout stm
    # Orbax -> torch (a state_dict of lcm_jax.interop.torch_lcm.LCMTorch)
    python -m lcm_jax.convert --from orbax --to torch stm/ stm.pth

The default `--layout lcm` reads a full LCMTorch state_dict, whose GRM/PGM/ORM switches are read
off its keys; "stm" fixes them (PGM and ORM off). From torch, `--model` picks configs/model.py's
"paper" (ResNet-50, the default) or "tiny" config. The Orbax output (restorable with
`lcm_jax.checkpoints.load_variables`) stores that model config as `model_config.json`, so
`lcm_jax.evaluate` and `lcm_jax.segment` need no --model for it. From Orbax, the model config
stored with the checkpoint is used (`--model` overrides it, and is needed for checkpoints written
before configs were stored). The config is printed. State_dicts are read with
`torch.load(weights_only=True)`. Outputs are written atomically; on any error nothing is left at
the output path (and a rerun removes what a killed one left). Exit status: 0 done, 2 an input
that cannot be used (one line "error: ...").
"""

import argparse
from pathlib import Path

import jax
import torch

from lcm_jax import checkpoints, cli, files
from lcm_jax.configs import model as model_configs
from lcm_jax.interop import convert
from lcm_jax.interop.torch_lcm import build_torch_model
from lcm_jax.model import init_variables

SWITCHES = ("use_grm", "use_pgm", "use_orm", "orm_shared_g")


def _print_config(cfg: dict) -> None:
    print("model config: " + ", ".join(f"{k}={cfg[k]}" for k in ("backbone", "width", *SWITCHES)))


def torch_to_orbax(src: Path, dst: Path, layout: str, cfg: dict, seed: int = 0) -> dict:
    """Converts the state_dict at `src` into an Orbax directory `dst`; returns the config used."""
    sd = checkpoints.load_torch_state_dict(src)
    if layout == "lcm":
        cfg.update(convert.infer_switches(sd))
        template = convert.abstract_variables(cfg)
    elif layout == "stm":
        cfg.update(use_grm=True, use_pgm=False, use_orm=False)
        template = convert.abstract_variables(cfg)
    else:
        template = jax.jit(lambda key: init_variables(cfg, key))(jax.random.key(seed))
        unused = [k for k in sd if k.startswith(("layer4.", "fc."))]
        print(f"ignored {len(unused)} layer4/fc keys (LCM reads res4 = layer3, by design)")
    variables = convert.torch_to_flax(sd, template, layout=layout, source=str(src))
    checkpoints.save_variables(dst, variables, cfg)
    return cfg


def orbax_to_torch(src: Path, dst: Path, model: str | None) -> dict:
    """Converts the Orbax variables at `src` into a LCMTorch state_dict file `dst`; returns the
    model config (the stored one, or `model`: see `checkpoints.resolve_model_config`)."""
    cfg, variables = checkpoints.load_model(src, model)
    sd = convert.flax_to_torch(variables, build_torch_model(cfg).state_dict())
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; refusing to overwrite it")
    with files.atomic_path(dst) as tmp:
        torch.save(sd, tmp)
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lcm_jax.convert", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--from", dest="src_format", choices=("torch", "orbax"), required=True)
    parser.add_argument("--to", dest="dst_format", choices=("torch", "orbax"), required=True)
    parser.add_argument("--layout", choices=convert.LAYOUTS, default="lcm")
    parser.add_argument(
        "--model",
        choices=checkpoints.MODEL_NAMES,
        default=None,
        help="from torch: the model config (default paper); from orbax: overrides the stored one",
    )
    parser.add_argument("--seed", type=int, default=0, help="init of LCM-only layers (torchvision)")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if args.src_format == args.dst_format:
        parser.error("--from and --to must differ")
    if args.src_format == "orbax" and args.layout != "lcm":
        parser.error("--from orbax writes the 'lcm' layout only")

    def body() -> int:
        if args.output.exists():
            raise FileExistsError(f"output {args.output} already exists; refusing to overwrite it")
        files.check_writable(args.output, folder=args.dst_format == "orbax")
        files.remove_temporaries(args.output.parent, args.output.name)
        if args.src_format == "torch":
            cfg = dict(model_configs.get_config(args.model or "paper"))
            cfg = torch_to_orbax(args.input, args.output, args.layout, cfg, args.seed)
        else:
            cfg = orbax_to_torch(args.input, args.output, args.model)
        _print_config(cfg)
        print(f"wrote {args.output}")
        return cli.EXIT_OK

    return cli.run(body)


if __name__ == "__main__":
    cli.exit(main())
