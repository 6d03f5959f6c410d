"""Two processes on JAX's distributed runtime (CPU collectives over gloo) run one sweep over a global
mesh of their devices: the result and the checkpoint equal those of one process."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxq.cli import parse_run
from jaxq.sweep import sweep

ROOT = Path(__file__).parent.parent
ARGV = ["sweep", "chain", "--learner", "q", "--depth", "2", "5", "--gamma", "0.9", "0.99", "--seeds", "4",
        "--steps", "600", "--log-every", "100"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("every", [200, None])  # None: the default interval, decided by process 0 for both
def test_two_processes_give_the_one_process_result_and_checkpoint(tmp_path, every):
    out = tmp_path / "run"
    saving = ["--checkpoint-every", str(every)] if every else ["--checkpoint-dir", str(out / "checkpoint")]
    port = free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cluster = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    processes = [subprocess.Popen([sys.executable, "-m", "jaxq.cli", *ARGV, *saving, "--out", str(out), *cluster,
                                   "--process-id", str(i)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in (0, 1)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n\n".join(outputs)
    assert "2 device(s)" in outputs[0] and outputs[1].count("final error") == 0  # process 0 reports and writes

    args, axes, _, learner = parse_run("jaxq sweep", ARGV[1:])
    one = sweep(learner, axes, args.seeds, seed=args.seed)
    curves = np.load(out / "curves.npz")
    for name, values in one.logs.items():
        np.testing.assert_array_equal(curves[name], values, err_msg=name)

    # The checkpoint both processes wrote (each its shards) resumes in this one process, from the step
    # before the last: its carry comes from both processes' files.
    folder = out / "checkpoint"
    last = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    shutil.rmtree(folder / str(last))
    resumed = sweep(learner, axes, args.seeds, seed=args.seed, checkpoint_dir=str(folder), checkpoint_every=every,
                    resume=True)
    assert resumed.timing["resumed_step"] == last - 1
    assert resumed.timing["saves"] == 1 if every else resumed.timing["saves"] >= 1
    for name, values in one.logs.items():
        np.testing.assert_array_equal(resumed.logs[name], values, err_msg=name)
