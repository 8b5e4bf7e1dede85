"""Joining a multi-process run: settings from flags and the environment, clear failures."""

import os
import subprocess
import sys
import time

import jax
import pytest

from lcm_jax import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*distributed.ENV.values(), "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
    return monkeypatch


def test_a_single_process_without_settings_initialises_nothing(clean_env):
    clean_env.setattr(jax.distributed, "initialize", lambda **_: pytest.fail("initialised"))
    assert distributed.initialize() is False


def test_an_address_without_a_process_count_names_what_is_missing(clean_env):
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    with pytest.raises(distributed.DistributedError) as e:
        distributed.initialize()
    assert "--num_processes or JAX_NUM_PROCESSES" in str(e.value)
    assert "--process_id or JAX_PROCESS_ID" in str(e.value)
    assert "coordinator_address" not in str(e.value)


def test_flags_come_before_the_environment_and_numbers_are_parsed(clean_env):
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    clean_env.setenv("JAX_NUM_PROCESSES", "4")
    clean_env.setenv("JAX_PROCESS_ID", "3")
    assert distributed.settings(process_id=2) == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 2,
    }
    with pytest.raises(
        distributed.DistributedError, match=r"process_id must be in \[0, num_processes=4\), got 7"
    ):
        distributed.settings(process_id=7)
    with pytest.raises(distributed.DistributedError, match="must be integers"):
        distributed.settings(num_processes="two")


def test_a_launcher_with_several_tasks_hands_over_to_jax_cluster_detection(clean_env):
    clean_env.setenv("SLURM_NTASKS", "2")
    calls = []
    clean_env.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert distributed.initialize(timeout_s=7) is True
    assert calls == [{"initialization_timeout": 37}]  # JAX finds address, count and index


def test_a_coordinator_nobody_serves_ends_the_process_with_one_line_and_status_2():
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1",  # nothing listens on port 1
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    code = "from lcm_jax import distributed; distributed.initialize(timeout_s=2); print('joined')"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == distributed.EXIT_CANNOT_JOIN
    assert time.monotonic() - start < 30  # the watchdog, not JAX's later deadline
    assert "joined" not in done.stdout
    assert "error: could not join the multi-process run through the coordinator at " in done.stderr
    assert "127.0.0.1:1 within 2 s" in done.stderr
    assert "Traceback" not in done.stderr
