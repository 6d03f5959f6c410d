"""The one-call sweep: named axes, independent lanes, chunking, sharding, checkpoints, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.learners import make_learner
from jaxq.sweep import sweep

AXES = {"depth": [2, 5], "gamma": [0.9, 0.99]}


@pytest.fixture(scope="module")
def learner():
    env, params = jaxq.make("Chain", depth=5, max_depth=5)
    return make_learner("q", env, params, steps=600, log_every=100, step_size="constant")


@pytest.fixture(scope="module")
def reference(learner):
    return sweep(learner, AXES, seeds=4, seed=3)


def test_results_carry_named_axes(reference):
    assert reference.axes == ["depth", "gamma", "seed", "t"]
    assert reference.coords["depth"] == [2, 5] and reference.coords["t"] == list(range(0, 601, 100))
    assert reference.logs["error"].shape == (2, 2, 4, 7)
    assert reference.logs["bias"].shape == (2, 2, 4, 7, 6)
    assert reference.timing["lanes"] == 16 and reference.timing["env_steps"] == 16 * 600
    assert reference.timing["devices"] == jax.device_count()


def test_lanes_are_independent(reference):
    """Different seeds explore differently (their visit counts differ)."""
    bias = reference.logs["bias"][1, 0]  # depth 5, gamma 0.9: [seeds, t, S]
    assert len({bias[s].tobytes() for s in range(4)}) == 4


def test_lane_equals_a_single_run_with_its_key(learner, reference):
    for (d, g), depth, gamma in [((0, 1), 2, 0.99), ((1, 0), 5, 0.9)]:
        hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in {**learner.defaults(), "depth": depth,
                                                                  "gamma": gamma}.items()}
        for s in (0, 3):
            key = jax.random.fold_in(jax.random.PRNGKey(3), s)
            carry = jax.jit(learner.init)(key, hp)
            first = jax.jit(learner.log)(carry, hp, 0)
            _, logs = jax.jit(learner.run, static_argnums=3)(carry, hp, 1, learner.num_logs)
            single = np.concatenate([np.asarray(first["error"])[None], np.asarray(logs["error"])])
            np.testing.assert_allclose(reference.logs["error"][d, g, s], single, rtol=1e-6, atol=1e-7)


def test_chunks_and_blocks_do_not_change_results(learner, reference):
    for options in ({"max_lanes": 4}, {"block_lanes": 1}, {"segments": 6}, {"max_lanes": 6, "block_lanes": 3}):
        other = sweep(learner, AXES, seeds=4, seed=3, **options)
        for name in reference.logs:
            np.testing.assert_allclose(other.logs[name], reference.logs[name], rtol=1e-6, atol=1e-6, err_msg=str(options))
    assert sweep(learner, AXES, seeds=4, seed=3, max_lanes=4).timing["chunks"] == 4


class _Interrupt(Exception):
    pass


def _interrupt_after(calls):
    count = {"n": 0}

    def progress(fraction, seconds):
        count["n"] += 1
        if count["n"] == calls:
            raise _Interrupt

    return progress


@pytest.mark.parametrize("interrupt_at", [2, 5])  # inside the first chunk; inside the second
def test_resume_after_interruption_equals_an_uninterrupted_run(learner, reference, tmp_path, interrupt_at):
    options = dict(seeds=4, seed=3, max_lanes=8, checkpoint_dir=str(tmp_path), checkpoint_every=200)
    with pytest.raises(_Interrupt):
        sweep(learner, AXES, progress=_interrupt_after(interrupt_at), **options)
    resumed = sweep(learner, AXES, resume=True, **options)
    for name in reference.logs:
        np.testing.assert_allclose(resumed.logs[name], reference.logs[name], rtol=1e-6, atol=1e-6)


def test_checkpoints_of_another_run_or_corrupt_ones_are_refused(learner, tmp_path):
    options = dict(seeds=2, checkpoint_dir=str(tmp_path), checkpoint_every=300)
    with pytest.raises(_Interrupt):
        sweep(learner, AXES, progress=_interrupt_after(1), **options)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        sweep(learner, AXES, **options)
    with pytest.raises(ValueError, match="written by a different run"):
        sweep(learner, {"depth": [2, 5], "gamma": [0.9, 0.95]}, resume=True, **options)
    # Flip bytes in the largest array file of the checkpoint.
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "state" in p.parts]
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt|cannot be read"):
        sweep(learner, AXES, resume=True, **options)


@pytest.mark.parametrize(
    "axes, seeds, message",
    [
        ({"gamma": []}, 4, "axis 'gamma' is empty"),
        ({"gamma": [0.9, 0.9]}, 4, "axis 'gamma' has repeated values"),
        ({"gamma": [0.9, 1.0]}, 4, "gamma=1.0 is not allowed; gamma must be a number in [0, 1)"),
        ({"gamma": [-0.1]}, 4, "gamma=-0.1 is not allowed"),
        ({"depth": [2, 6]}, 4, "depth=6 is not allowed; depth must be an integer in [1, 5]"),
        ({"depth": [0]}, 4, "depth=0 is not allowed"),
        ({"epsilon": [1.5]}, 4, "epsilon=1.5 is not allowed"),
        ({"alpha": [0.0]}, 4, "alpha=0.0 is not allowed; alpha must be a number in (0, 1]"),
        ({"temperature": [1.0]}, 4, "'temperature' is not a hyper-parameter"),
        ({"gamma": [0.9]}, 0, "seeds=0 is not allowed"),
        ({"gamma": [0.9]}, -3, "seeds=-3 is not allowed"),
    ],
)
def test_bad_sweeps_fail_before_compiling(learner, axes, seeds, message, monkeypatch):
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError) as error:
        sweep(learner, axes, seeds=seeds)
    assert message in str(error.value)
