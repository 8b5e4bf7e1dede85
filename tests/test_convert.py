"""Weight conversion: STM and torchvision layouts, strictness, the CLI and Orbax checkpoints."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import torch
from test_inference_support import davis_folder

from lcm_jax import checkpoints, evaluate
from lcm_jax import convert as cli
from lcm_jax.configs import model as model_configs
from lcm_jax.interop import convert
from lcm_jax.interop import torch_lcm as tl
from lcm_jax.model import MemoryPool, PrevFrame, Reference, build_model

H = W = 64
ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> dict:
    cfg = dict(model_configs.get_config("tiny"))
    cfg.update(overrides)
    return cfg


def random_like(template, seed: int) -> dict:
    """Variables with the template's shapes filled with random numbers (a stand-in for init)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), template)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


# ---------------------------------------------------------------------------------- STM layout


def stm_release(tnet: tl.LCMTorch) -> dict:
    """The reference's weights under the names of STM's official release (written out here
    from STM's module structure: Encoder_M/Encoder_Q with res2..res4, KV_*_r4.Key/.Value,
    Decoder.*, mean/std buffers, DataParallel prefix)."""
    encoders = {"memory_encoder": "Encoder_M", "query_encoder": "Encoder_Q"}
    heads = {
        "memory_proj.key_g": "KV_M_r4.Key",
        "memory_proj.value": "KV_M_r4.Value",
        "query_proj.key_g": "KV_Q_r4.Key",
        "query_proj.value": "KV_Q_r4.Value",
    }
    out = {}
    for key, value in tnet.state_dict().items():
        top, rest = key.split(".", 1)
        if top in encoders:
            for n in (1, 2, 3):
                rest = rest.replace(f"layer{n}.", f"res{n + 1}.")
            name = f"{encoders[top]}.{rest}"
        elif top == "decoder":
            name = f"Decoder.{rest}"
        else:
            head, param = key.rsplit(".", 1)
            name = f"{heads[head]}.{param}"
        out[f"module.{name}"] = value
    for enc in encoders.values():
        out[f"module.{enc}.mean"] = torch.tensor(tl.IMAGENET_MEAN).view(1, 3, 1, 1)
        out[f"module.{enc}.std"] = torch.tensor(tl.IMAGENET_STD).view(1, 3, 1, 1)
    return out


def test_stm_release_converts_into_a_model_whose_segment_gives_stm_logits():
    cfg = tiny_config(use_pgm=False, use_orm=False, zero_init_mask_stem=False)
    tnet = tl.random_weights_(tl.build_torch_model(cfg), 11)
    release = stm_release(tnet)
    assert "module.Encoder_M.res2.0.conv1.weight" in release
    assert "module.Decoder.RF3.ResFS.conv1.weight" in release
    variables = convert.torch_to_flax(release, convert.abstract_variables(cfg), layout="stm")

    rng = np.random.default_rng(11)
    b, o, t = 1, 2, 2
    frame = rng.random((b, H, W, 3), dtype=np.float32)
    k = rng.standard_normal((b, o, t, 4, 4, tnet.key_dim)).astype(np.float32)
    v = rng.standard_normal((b, o, t, 4, 4, tnet.value_dim)).astype(np.float32)
    mvalid = np.array([[[True, True], [True, False]]])
    mask = rng.random((b, o, H, W), dtype=np.float32)
    valid = np.ones((b, o), bool)
    net = build_model(cfg)
    f = net.apply(
        variables,
        frame,
        MemoryPool(k_g=k, v=v, valid=mvalid),
        PrevFrame(k_l=None, mask=mask),
        Reference(v=v[:, :, 0], mask=mask),
        valid,
        method=net.segment,
    )
    tt = torch.from_numpy
    with torch.no_grad():
        ref = tnet.segment(
            tt(frame),
            tl.MemoryPool(tt(k), tt(v), tt(mvalid)),
            tl.PrevFrame(None, tt(mask)),
            tl.Reference(tt(v[:, :, 0]), tt(mask)),
            tt(valid),
        ).numpy()
    assert np.abs(np.asarray(f) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_stm_layout_refuses_a_model_with_pgm_or_orm_and_foreign_normalisation():
    cfg = tiny_config(use_pgm=False, use_orm=False)
    release = stm_release(tl.build_torch_model(cfg))
    with pytest.raises(convert.ConversionError, match="use_pgm=False and use_orm=False"):
        convert.torch_to_flax(release, convert.abstract_variables(tiny_config()), layout="stm")
    release["module.Encoder_Q.std"] = torch.ones(1, 3, 1, 1)
    with pytest.raises(convert.ConversionError, match="Encoder_Q.std"):
        convert.torch_to_flax(release, convert.abstract_variables(cfg), layout="stm")


# -------------------------------------------------------------------------- torchvision layout


def test_torchvision_resnet50_fills_both_encoders_and_keeps_the_fresh_lcm_layers():
    cfg = tiny_config(backbone="resnet50")
    resnet = tl.random_weights_(tl.Encoder("resnet50", cfg["width"], memory=False), 12).eval()
    sd = dict(resnet.state_dict())
    assert "layer1.0.downsample.0.weight" in sd and "layer3.5.bn3.running_var" in sd
    sd["layer4.0.conv1.weight"] = torch.randn(64, 128, 1, 1)  # unused by LCM, by design
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 256), torch.randn(1000)
    init = random_like(convert.abstract_variables(cfg), 12)
    variables = convert.torch_to_flax(sd, init, layout="torchvision")

    p = variables["params"]
    for name in ("query_proj", "memory_proj", "pgm", "orm", "decoder"):
        for a, b in zip(
            jax.tree.leaves(p[name]), jax.tree.leaves(init["params"][name]), strict=True
        ):
            assert np.array_equal(a, b)
    for stem in ("conv1_m", "conv1_o"):
        assert not np.any(p["memory_encoder"][stem]["kernel"])
    np.testing.assert_array_equal(
        p["query_encoder"]["layer1_0"]["downsample_conv"]["kernel"],
        np.transpose(sd["layer1.0.downsample.0.weight"].numpy(), (2, 3, 1, 0)),
    )
    rng = np.random.default_rng(12)
    image = rng.random((1, H, W, 3), dtype=np.float32)
    mask = rng.random((1, H, W), dtype=np.float32)
    net = build_model(cfg)
    fq = net.apply(variables, image, method=lambda m, x: m.query_encoder(x))[2]
    fm = net.apply(variables, image, mask, mask, method=lambda m, *a: m.memory_encoder(*a))[2]
    with torch.no_grad():
        ref = resnet(nchw(image))[0].permute(0, 2, 3, 1).numpy()
    for f in (fq, fm):  # with conv1_m/conv1_o at zero the memory encoder is the plain ResNet
        assert np.abs(np.asarray(f) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_torchvision_layout_lists_the_missing_and_mismatched_trunk_keys():
    cfg = tiny_config()
    sd = dict(tl.Encoder("resnet18", cfg["width"], memory=False).state_dict())
    del sd["layer3.1.conv2.weight"]
    sd["bn1.weight"] = torch.ones(5)
    init = random_like(convert.abstract_variables(cfg), 0)
    with pytest.raises(convert.ConversionError) as e:
        convert.torch_to_flax(sd, init, layout="torchvision")
    assert "layer3.1.conv2.weight" in str(e.value) and "bn1.weight: [5], expected [8]" in str(
        e.value
    )


# ---------------------------------------------------------------------------------- strictness


def test_lcm_layout_lists_missing_unexpected_and_mismatched_keys_in_one_error():
    cfg = tiny_config()
    sd = dict(tl.build_torch_model(cfg).state_dict())
    del sd["decoder.pred2.bias"]
    sd["decoder.extra.weight"] = torch.zeros(3)
    sd["orm.fc1.weight"] = torch.zeros(5, 64)
    with pytest.raises(convert.ConversionError) as e:
        convert.torch_to_flax(sd, convert.abstract_variables(cfg))
    msg = str(e.value)
    assert "missing keys (1)" in msg and "decoder.pred2.bias [2]" in msg
    assert "unexpected keys (1)" in msg and "decoder.extra.weight" in msg
    assert "orm.fc1.weight: [5, 64], expected [4, 64]" in msg


def test_dataparallel_prefix_is_stripped_and_non_tensors_are_refused():
    cfg = tiny_config()
    sd = tl.build_torch_model(cfg).state_dict()
    template = convert.abstract_variables(cfg)
    plain = convert.torch_to_flax(sd, template)
    prefixed = convert.torch_to_flax({f"module.{k}": v for k, v in sd.items()}, template)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(prefixed), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(convert.ConversionError, match="'epoch' is a int, not a tensor"):
        convert.torch_to_flax({**sd, "epoch": 3}, template)


def test_flax_to_torch_refuses_variables_of_another_config():
    variables = random_like(convert.abstract_variables(tiny_config(use_orm=False)), 0)
    with pytest.raises(convert.ConversionError, match=r"missing keys \(\d+\)"):
        convert.flax_to_torch(variables, tl.build_torch_model(tiny_config()).state_dict())


# ----------------------------------------------------------------------------------------- CLI


def run_cli(*args) -> int:
    """The convert CLI; from torch with --model tiny (from orbax the stored config counts)."""
    args = [*map(str, args)]
    return cli.main(args + (["--model", "tiny"] if args[1] == "torch" else []))


def test_cli_round_trip_torch_to_orbax_to_torch_is_exact(tmp_path):
    tnet = tl.random_weights_(tl.build_torch_model(tiny_config(use_pgm=False)), 13)
    torch.save({f"module.{k}": v for k, v in tnet.state_dict().items()}, tmp_path / "in.pth")
    assert run_cli("--from", "torch", "--to", "orbax", tmp_path / "in.pth", tmp_path / "ck") == 0
    variables = checkpoints.load_variables(tmp_path / "ck")
    assert "pgm" not in variables["params"]  # the switches were read off the weights
    assert checkpoints.load_model_config(tmp_path / "ck") == tiny_config(use_pgm=False)
    np.testing.assert_array_equal(
        variables["params"]["decoder"]["convFM"]["kernel"],
        np.transpose(tnet.decoder.convFM.weight.detach().numpy(), (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["memory_encoder"]["bn1"]["var"],
        tnet.memory_encoder.bn1.running_var.numpy(),
    )
    assert run_cli("--from", "orbax", "--to", "torch", tmp_path / "ck", tmp_path / "out.pth") == 0
    back = torch.load(tmp_path / "out.pth", weights_only=True)
    assert back.keys() == tnet.state_dict().keys()
    for k, v in tnet.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(back[k], v), k


def test_cli_converts_an_stm_release_into_a_model_without_pgm_and_orm(tmp_path, capsys):
    tnet = tl.build_torch_model(tiny_config(use_pgm=False, use_orm=False))
    torch.save(stm_release(tnet), tmp_path / "stm.pth")
    args = ("--from", "torch", "--to", "orbax", tmp_path / "stm.pth", tmp_path / "ck")
    assert run_cli(*args, "--layout", "stm") == 0
    assert "use_pgm=False, use_orm=False" in capsys.readouterr().out
    params = checkpoints.load_variables(tmp_path / "ck")["params"]
    assert "pgm" not in params and "orm" not in params
    np.testing.assert_array_equal(
        params["memory_proj"]["key_g"]["bias"], tnet.memory_proj.key_g.bias.detach().numpy()
    )


class NotATensor:
    pass


@pytest.mark.parametrize(
    "case", ["truncated", "text", "pickled_object", "non_tensor", "other_arch"]
)
def test_cli_bad_input_is_a_clear_error_and_leaves_no_output(tmp_path, capsys, case):
    src = tmp_path / "in.pth"
    sd = tl.build_torch_model(tiny_config()).state_dict()
    if case == "truncated":
        torch.save(sd, src)
        src.write_bytes(src.read_bytes()[:4000])
        expected = "truncated or not a .pth file"
    elif case == "text":
        src.write_text("hello\n")  # was a KeyError traceback
        expected = "cannot be read as a torch checkpoint (truncated or not a .pth file): KeyError"
    elif case == "pickled_object":
        src.write_bytes(pickle.dumps({"model": NotATensor()}))
        expected = "objects other than tensors"
    elif case == "non_tensor":
        torch.save({"state_dict": sd, "epoch": 3}, src)
        expected = "not a tensor"
    else:
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, src)  # VGG
        expected = "; 1 parameter(s) unexpected: features.0.weight"
    assert run_cli("--from", "torch", "--to", "orbax", src, tmp_path / "out") == 2
    err = capsys.readouterr().err
    error = err[err.index("error: ") :]  # torch may warn first (a pickle of another protocol)
    assert str(src) in error and expected in error and "Traceback" not in err
    assert error.count("\n") == 1  # one line
    assert sorted(os.listdir(tmp_path)) == ["in.pth"]  # no output, no temporary left


def test_an_stm_release_converted_by_the_cli_is_evaluated_with_no_model_flag(tmp_path, capsys):
    tnet = tl.build_torch_model(tiny_config(use_pgm=False, use_orm=False))
    torch.save(stm_release(tnet), tmp_path / "STM_weights.pth")
    stm = tmp_path / "stm"
    assert run_cli("--from", "torch", "--to", "orbax", tmp_path / "STM_weights.pth", stm,
                   "--layout", "stm") == 0  # fmt: skip
    root = davis_folder(tmp_path / "DAVIS", ["a"])
    out = tmp_path / "results"
    assert evaluate.main(["--dataset", "davis", "--root", str(root), "--split", "val",
                          "--checkpoint", str(stm), "--out", str(out)]) == 0  # fmt: skip
    assert "J&F-Mean" in capsys.readouterr().out
    config = json.loads((out / "manifest.json").read_text())["model_config"]
    assert (config["backbone"], config["use_pgm"], config["use_orm"]) == ("resnet18", False, False)


def test_convert_from_orbax_reads_the_stored_config_and_an_old_checkpoint_needs_model(
    tmp_path, capsys
):
    cfg = tiny_config(use_orm=False)
    variables = random_like(convert.abstract_variables(cfg), 5)
    checkpoints.save_variables(tmp_path / "new", variables, cfg)
    assert run_cli("--from", "orbax", "--to", "torch", tmp_path / "new", tmp_path / "new.pth") == 0
    assert "use_orm=False" in capsys.readouterr().out
    checkpointer = ocp.StandardCheckpointer()  # what save_variables wrote before model_config
    checkpointer.save(tmp_path / "old", variables)
    checkpointer.wait_until_finished()
    assert cli.main(["--from", "orbax", "--to", "torch", str(tmp_path / "old"),
                     str(tmp_path / "old.pth")]) == 2  # fmt: skip
    assert "stores no model config" in capsys.readouterr().err
    assert cli.main(["--from", "orbax", "--to", "torch", str(tmp_path / "old"),
                     str(tmp_path / "old.pth"), "--model", "tiny"]) == 0  # fmt: skip
    old, new = torch.load(tmp_path / "old.pth"), torch.load(tmp_path / "new.pth")
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)


# --------------------------------------------------------------------------------- checkpoints


def small_variables():
    return {
        "params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}},
        "batch_stats": {"bn": {"mean": np.ones(3, np.float32), "var": np.full(3, 2, np.float32)}},
    }


def test_save_then_load_variables_round_trips_with_the_model_config_and_refuses_to_overwrite(
    tmp_path,
):
    v = small_variables()
    config = {"backbone": "resnet18", "width": 0.125, "use_pgm": False}
    checkpoints.save_variables(tmp_path / "vars", v, config)
    back = checkpoints.load_variables(tmp_path / "vars")
    assert jax.tree.structure(back) == jax.tree.structure(v)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(v), strict=True):
        assert np.array_equal(a, b)
    assert checkpoints.load_model_config(tmp_path / "vars") == config
    with pytest.raises(FileExistsError):
        checkpoints.save_variables(tmp_path / "vars", v, config)


def test_a_checkpoint_written_before_configs_were_stored_loads_without_a_config(tmp_path):
    checkpointer = ocp.StandardCheckpointer()  # what save_variables wrote before model_config
    checkpointer.save(tmp_path / "old", small_variables())
    checkpointer.wait_until_finished()
    back = checkpoints.load_variables(tmp_path / "old")
    assert np.array_equal(
        back["params"]["conv"]["kernel"], small_variables()["params"]["conv"]["kernel"]
    )
    assert checkpoints.load_model_config(tmp_path / "old") is None


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    bad = {"params": {"x": np.array([object()])}}
    with pytest.raises(Exception):  # noqa: B017 (orbax's own error for an object array)
        checkpoints.save_variables(tmp_path / "vars", bad, {})
    assert os.listdir(tmp_path) == []


def test_load_variables_reads_the_latest_step_of_a_training_workdir(tmp_path):
    v = small_variables()
    manager = ocp.CheckpointManager(tmp_path / "wd")
    for step in (10, 20):
        params = jax.tree.map(lambda x, s=step: x + s, v["params"])
        state = {
            "step": step,
            "params": params,
            "batch_stats": v["batch_stats"],
            "opt_state": optax.adam(1e-3).init(params),
        }
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
    manager.wait_until_finished()
    back = checkpoints.load_variables(tmp_path / "wd")
    assert set(back) == {"params", "batch_stats"}
    np.testing.assert_array_equal(
        back["params"]["conv"]["kernel"], v["params"]["conv"]["kernel"] + 20
    )


def test_a_workdir_saved_sharded_over_8_devices_loads_in_a_single_device_process(tmp_path):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    kernel = jax.device_put(np.arange(16, dtype=np.float32).reshape(8, 2), sharding)
    state = {"step": 1, "params": {"k": kernel}, "batch_stats": {}, "opt_state": {"mu": kernel}}
    manager = ocp.CheckpointManager(tmp_path / "wd" / "checkpoints")
    manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
    manager.wait_until_finished()
    code = (
        "from lcm_jax.checkpoints import load_variables; import jax, numpy as np; "
        f"v = load_variables({str(tmp_path / 'wd')!r}); assert jax.device_count() == 1; "
        "np.testing.assert_array_equal(v['params']['k'], np.arange(16.0).reshape(8, 2))"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_weight_fields_are_exactly_the_config_fields_that_change_the_variables():
    other = {"backbone": "resnet34", "width": 0.25, "frozen_bn": False,
             "zero_init_mask_stem": False, "use_grm": False, "use_pgm": False, "use_orm": False,
             "scale_keys": False, "grm_chunk_size": 64, "pgm_top_k": 2,
             "position_map_scale": "none", "mask_pooling": "max", "orm_shared_g": True,
             "orm_reduction": 8, "max_objects": 2, "dtype": "bfloat16",
             "attention_dtype": "compute", "local_fusion": "residual"}  # fmt: skip
    base = tiny_config()
    assert set(other) == set(base)  # a new config field must be classified here

    def shapes(cfg):
        tree = convert.abstract_variables(cfg)
        return jax.tree.map(lambda x: (x.shape, x.dtype), tree)

    reference = shapes(base)
    changing = {f for f, value in other.items() if shapes({**base, f: value}) != reference}
    assert changing == set(checkpoints.WEIGHT_FIELDS)


def test_an_old_checkpoint_takes_its_switches_from_the_weights_and_a_bad_stored_config_is_named(
    tmp_path,
):
    stm = tiny_config(use_pgm=False, use_orm=False)
    variables = random_like(convert.abstract_variables(stm), 1)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "old", variables)
    checkpointer.wait_until_finished()
    config, _ = checkpoints.load_model(tmp_path / "old", "tiny")
    assert config == stm
    checkpoints.save_variables(tmp_path / "bad", variables, tiny_config())  # says PGM, ORM on
    with pytest.raises(checkpoints.ModelMismatchError) as e:
        checkpoints.load_model(tmp_path / "bad")
    assert "the model config stored with it does not fit the weights" in str(e.value)
    extra = len(jax.tree.leaves(convert.abstract_variables(tiny_config()))) - len(
        jax.tree.leaves(variables)
    )  # the PGM and ORM variables (and key_l) that the weights lack
    assert f"{extra} parameter(s) differ" in str(e.value)
    assert "found nothing" in str(e.value)  # a PGM or ORM variable the weights lack


def test_load_variables_names_a_missing_or_foreign_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.load_variables(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="neither variables"):
        checkpoints.load_variables(tmp_path / "empty")


def test_cli_output_that_exists_or_lies_under_a_file_is_one_line_before_reading(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    missing = tmp_path / "never_read.pth"  # the output is checked first
    assert run_cli("--from", "torch", "--to", "orbax", missing, tmp_path / "afile") == 2
    assert capsys.readouterr().err == (
        f"error: output {tmp_path / 'afile'} already exists; refusing to overwrite it\n"
    )  # without argparse's usage text
    for out in (tmp_path / "afile" / "ck", tmp_path / "afile" / "sub" / "ck"):
        assert run_cli("--from", "torch", "--to", "orbax", missing, out) == 2
        err = capsys.readouterr().err
        assert err == f"error: {out}: Not a directory ({tmp_path / 'afile'} is a file)\n"
    assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("[1, 2]", "holds a JSON list, not a model config"),
        ("garbage{", "is not valid JSON (damaged?): Expecting value: line 1 column 1"),
    ],
)
def test_a_damaged_stored_model_config_is_one_line_naming_its_file(
    tmp_path, capsys, content, expected
):
    checkpoints.save_variables(tmp_path / "ck", small_variables(), tiny_config())
    file = tmp_path / "ck" / checkpoints.MODEL_CONFIG_FILE
    file.write_text(content)
    with pytest.raises(checkpoints.CheckpointError, match=r"model_config\.json"):
        checkpoints.load_model_config(tmp_path / "ck")
    assert cli.main(["--from", "orbax", "--to", "torch", str(tmp_path / "ck"),
                     str(tmp_path / "out.pth")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith(f"error: {file} {expected}")
    assert not (tmp_path / "out.pth").exists()


def test_cli_a_state_dict_of_another_model_is_one_line_with_counts_and_first_names(
    tmp_path, capsys
):
    sd = tl.build_torch_model(tiny_config()).state_dict()
    weights = [k for k in sd if k.endswith(".weight")]
    missing, shape = weights[:5], weights[5]
    partial = {k: v for k, v in sd.items() if k not in missing}
    partial[shape] = torch.zeros(3)
    partial["extra.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "in.pth")
    assert run_cli("--from", "torch", "--to", "orbax", tmp_path / "in.pth", tmp_path / "o") == 2
    err = capsys.readouterr().err
    head = f"error: {tmp_path / 'in.pth'} (layout 'lcm') does not fit the target model: "
    tail = (
        "; 1 parameter(s) unexpected: extra.weight; 1 parameter(s) of another shape: "
        f"{shape}: [3], expected {list(sd[shape].shape)}\n"
    )
    assert err.startswith(head + "5 parameter(s) missing, e.g. ") and err.endswith(tail)
    shown = err[len(head + "5 parameter(s) missing, e.g. ") : -len(tail)].split(", ")
    assert len(shown) == 3 and set(shown) < set(missing)
    assert not (tmp_path / "o").exists()
