"""Checkpoints across processes: a sweep killed with SIGKILL at random moments (one of them during a
save) resumes bit-identically -- tabular Q-learning, and DQN with its replay buffers, optimiser and
target network -- and a run saved on 2 devices resumes on 1 and on 8."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sweep_worker

WORKER = Path(__file__).with_name("sweep_worker.py")
ROOT = Path(__file__).parent.parent
SPEC = {**sweep_worker.SPEC, "steps": 1200, "log_every": 50}  # 24 log points; 16 lanes, chunks of 8
# DQN and Double DQN x 2 seeds on CartPole, 20 log points, in chunks of 2 lanes
DQN_SPEC = {**sweep_worker.SPEC, "learner": "dqn", "steps": 800, "log_every": 40, "axes": {"double": [0.0, 1.0]},
            "seeds": 2}


@pytest.fixture(scope="module")
def reference():
    return sweep_worker.run(SPEC)


def start(spec):
    """A worker process; it shares the run's compilation cache (conftest.py), caching every program, so
    that each restart after a kill compiles nothing."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    return subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def identical(logs, reference):
    return all(np.array_equal(logs[k], reference.logs[k], equal_nan=True) for k in reference.logs)


def steps_in(folder):
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.is_dir() else set()


def saving(folder):
    """Whether a save is under way: an orbax step being written, or a finished-logs file."""
    names = os.listdir(folder) if folder.is_dir() else []
    finished = os.listdir(folder / "finished") if (folder / "finished").is_dir() else []
    return any("orbax-checkpoint-tmp" in n for n in names) or any(n.endswith(".tmp") for n in finished)


def wait_for(condition, process, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and process.poll() is None:
        if condition():
            return True
        time.sleep(0.001)
    return condition()


def kill(process):
    process.send_signal(signal.SIGKILL)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == -signal.SIGKILL, output


def kill_during_a_save_then_at_random(spec, folder, rng, note):
    """Run ``spec`` (checkpointing to ``folder``) in a process, kill it during a save once an older
    step exists (after letting 0 to 5 saves through), resume it in another process and kill that one
    at a random moment (after 1 to 8 more saves)."""
    first = start(spec)
    assert wait_for(lambda: steps_in(folder), first), first.communicate()[0]
    for _ in range(rng.randrange(0, 6)):
        wait_for(lambda: not saving(folder), first)
        wait_for(lambda: saving(folder), first)
    assert wait_for(lambda: saving(folder), first), f"{note}: the run ended before a save was cut"
    kill(first)
    later = max(steps_in(folder)) + rng.randrange(1, 9)
    second = start({**spec, "options": {**spec["options"], "resume": True}})
    assert wait_for(lambda: max(steps_in(folder)) >= later, second), second.communicate()[0]
    time.sleep(rng.uniform(0.0, 0.03))
    kill(second)


@pytest.mark.slow
@pytest.mark.parametrize("spec, every, lanes", [(SPEC, 50, 8), (DQN_SPEC, 40, 2)], ids=["tabular", "dqn"])
def test_sigkill_at_random_moments_then_resume_is_bit_identical(spec, every, lanes, tmp_path):
    # the reference runs in the same chunks: XLA:CPU takes a network's float sums (forward,
    # gradients, mean loss) in an order that depends on how many lanes one call holds, so a DQN run
    # in other chunk sizes differs in the last bits (tabular lanes do not)
    reference = sweep_worker.run({**spec, "options": {"max_lanes": lanes}})
    seed = int(os.environ.get("JAXQ_KILL_SEED", random.randrange(2**32)))  # replay a failure with its seed
    folder = tmp_path / "checkpoint"
    spec = {**spec, "out": str(tmp_path / "never.npz"),
            "options": {"checkpoint_dir": str(folder), "checkpoint_every": every, "max_lanes": lanes}}
    kill_during_a_save_then_at_random(spec, folder, random.Random(seed), f"JAXQ_KILL_SEED={seed}")
    resumed = sweep_worker.run(spec, resume=True)
    assert identical(resumed.logs, reference), f"JAXQ_KILL_SEED={seed}"
    finals, expected = sweep_worker.finals(resumed), sweep_worker.finals(reference)
    assert finals.keys() == expected.keys()
    assert len(expected) >= 4 if spec["learner"] == "dqn" else not expected  # DQN: its networks' leaves
    assert all(np.array_equal(finals[k], expected[k]) for k in expected), f"JAXQ_KILL_SEED={seed}"


@pytest.mark.slow
def test_saved_on_two_devices_resumes_on_one_and_on_eight(tmp_path, reference):
    spec = {**SPEC, "options": {"max_lanes": 8, "checkpoint_every": 200}}
    saved = tmp_path / "saved"

    class Disconnect(Exception):
        pass

    def progress(status):
        if status.chunk == 2 and status.log_point == 8:
            raise Disconnect

    with pytest.raises(Disconnect):
        sweep_worker.run(spec, checkpoint_dir=str(saved), progress=progress)
    runs = {}
    for devices, options in ((1, {"max_lanes": 4}), (8, {})):  # 1: the saved chunk runs as two; 8: padded to 16
        folder = tmp_path / f"on{devices}"
        shutil.copytree(saved, folder)
        out = tmp_path / f"on{devices}.npz"
        runs[devices] = (start({**spec, "devices": devices, "out": str(out),
                                "options": {**options, "checkpoint_dir": str(folder), "resume": True}}), out)
    for devices, (process, out) in runs.items():
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output
        logs = np.load(out)
        assert int(logs["devices"]) == devices and int(logs["lanes_per_call"]) == (4 if devices == 1 else 16)
        assert identical(logs, reference), devices
