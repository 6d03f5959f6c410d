"""The one-call sweep in stages -- plan (grid, layout, segments, pieces), compile, run -- and results
that do not depend on how lanes and time are split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep_worker
from jaxq.sweep import (LaneShapes, Outputs, Piece, Start, chunk_rows, compile_program, plan_grid, plan_layout,
                        plan_pieces, plan_segment, run_pieces, segment_ends, sweep)

AXES = sweep_worker.SPEC["axes"]


@pytest.fixture(scope="module")
def learner():
    return sweep_worker.learner(sweep_worker.SPEC)  # Q-learning on Chain(5), 600 steps


@pytest.fixture(scope="module")
def reference(learner):
    return sweep(learner, AXES, seeds=4, seed=3)


def identical(a, b):
    return all(np.array_equal(a.logs[k], b.logs[k], equal_nan=True) for k in a.logs) and set(a.logs) == set(b.logs)


def test_results_carry_named_axes(reference):
    assert reference.axes == ["depth", "gamma", "seed", "t"]
    assert reference.coords["depth"] == [2, 5] and reference.coords["t"] == list(range(0, 601, 100))
    assert reference.logs["error"].shape == (2, 2, 4, 7)
    assert reference.logs["bias"].shape == (2, 2, 4, 7, 6)
    assert reference.timing["lanes"] == 16 and reference.timing["env_steps"] == 16 * 600
    assert reference.timing["devices"] == jax.device_count() and reference.timing["processes"] == 1
    assert reference.timing["saves"] == 0 and reference.timing["resumed_step"] is None


def test_lanes_are_independent(reference):
    """Different seeds explore differently (their visit counts differ)."""
    bias = reference.logs["bias"][1, 0]  # depth 5, gamma 0.9: [seeds, t, S]
    assert len({bias[s].tobytes() for s in range(4)}) == 4


def test_lane_equals_a_single_run_with_its_key(learner, reference):
    init, log = jax.jit(learner.init), jax.jit(learner.log)
    run = jax.jit(learner.run, static_argnums=3)
    for (d, g), depth, gamma in [((0, 1), 2, 0.99), ((1, 0), 5, 0.9)]:
        hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in {**learner.defaults(), "depth": depth,
                                                                  "gamma": gamma}.items()}
        for s in (0, 3):
            key = jax.random.fold_in(jax.random.PRNGKey(3), s)
            carry = init(key, hp)
            first = log(carry, hp, 0)
            _, logs = run(carry, hp, 1, learner.num_logs)
            single = np.concatenate([np.asarray(first["error"])[None], np.asarray(logs["error"])])
            np.testing.assert_allclose(reference.logs["error"][d, g, s], single, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("options", [{"max_lanes": 4}, {"segments": 6}, {"max_lanes": 6, "block_lanes": 3},
                                     {"block_lanes": 2}])
def test_chunks_blocks_and_segments_give_identical_bits(learner, reference, options):
    other = sweep(learner, AXES, seeds=4, seed=3, **options)
    assert identical(other, reference), options
    if "max_lanes" in options:
        assert other.timing["chunks"] > 1


def test_blocks_of_one_lane_agree_to_rounding(learner, reference):
    """A batch of one compiles to other kernels (matrix-vector products): equal up to the last bits."""
    other = sweep(learner, AXES, seeds=4, seed=3, block_lanes=1)
    for name in reference.logs:
        np.testing.assert_allclose(other.logs[name], reference.logs[name], rtol=1e-6, atol=1e-6)


def test_progress_says_which_chunk(learner):
    seen = []
    sweep(learner, AXES, seeds=4, seed=3, max_lanes=4, segments=3, progress=seen.append)
    assert [(p.chunk, p.log_point) for p in seen] == [(c, t) for c in (1, 2, 3, 4) for t in (2, 4, 6)]
    assert {p.chunks for p in seen} == {4}
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[0].fraction == pytest.approx(1 / 12)


def test_the_stages_compose_and_a_piece_continues_from_any_log_point(learner, reference):
    """plan -> compile -> run by hand; then the lanes 4 .. 11 run again from their carry after log point 2
    (as a restored piece, here in one chunk of 8 with its own padding): the same bits."""
    grid = plan_grid(learner, AXES, seeds=4, seed=3)
    shapes = LaneShapes.of(learner, grid)
    layout = plan_layout(grid.lanes, shapes.lane_bytes(learner.num_logs), 0, jax.device_count(), "cpu", max_lanes=8)
    program = compile_program(learner, layout, shapes)
    outputs = Outputs.empty(shapes, grid.lanes, learner.num_logs)
    run_pieces(program, grid, plan_pieces(grid.lanes, layout.chunk, []), outputs, segment=2, start=Start())
    logs = outputs.logs
    np.testing.assert_array_equal(logs["error"].reshape(2, 2, 4, 7), reference.logs["error"])

    piece = Piece(4, 12)
    hp, keys = program.lanes_of(grid, piece)
    carry = program.init(keys, hp, jnp.int32(0))
    carry, _ = program.run(2)(carry, hp, jnp.int32(1))
    host = jax.tree.map(lambda x: np.asarray(x)[: piece.lanes], carry)  # lanes 4 .. 11 after log point 2
    again = Outputs.empty(shapes, grid.lanes, learner.num_logs)
    run_pieces(program, grid, [Piece(4, 12, 3, host)], again, segment=2, start=Start(done=4))
    np.testing.assert_array_equal(again.logs["error"][4:12, 3:], logs["error"][4:12, 3:])


# -- plan, without compiling ----------------------------------------------------------------------
def test_plan_layout_fits_the_budget_and_the_devices():
    layout = plan_layout(1000, lane_bytes=1000, carry_bytes=100, devices=2, backend="cpu", memory_budget=100_000)
    assert layout.chunk <= 100 and layout.chunk % 2 == 0 and layout.block >= 2
    assert plan_layout(1000, 1000, 100, 2, "cpu", max_lanes=64).chunk <= 64
    few = plan_layout(3, 1000, 100, 8, "cpu")  # fewer lanes than devices: still 2 lanes per block
    assert (few.block, few.blocks, few.chunk) == (2, 1, 16)
    gpu = plan_layout(4096, 1000, 100, 2, "gpu")  # one block of every lane of a device
    assert (gpu.block, gpu.blocks, gpu.chunk) == (2048, 1, 4096)
    tight = plan_layout(1000, 1000, 100, 4, "cpu", max_lanes=4)  # the budget wins over the 2-lane block
    assert tight.chunk == 4
    with pytest.raises(ValueError, match="less than one lane needs"):
        plan_layout(10, lane_bytes=10_000, carry_bytes=9_000, devices=1, backend="cpu", memory_budget=5_000)


def test_plan_segment_takes_any_checkpoint_interval():
    assert plan_segment(100, 4000, checkpoint_every=50_000) == 12  # saves every 48 000 steps
    assert plan_segment(100, 4000, checkpoint_every=100) == 1  # shorter than a log interval: every log point
    assert plan_segment(100, 4000, checkpoint_every=10**9) == 100
    assert plan_segment(100, 4000) == 10
    assert plan_segment(100, 4000, segments=3) == 25  # the divisor of 100 closest to 100 / 3
    with pytest.raises(ValueError, match="give one"):
        plan_segment(100, 4000, checkpoint_every=8000, segments=3)


def test_segment_ends_land_on_multiples_of_the_length():
    assert segment_ends(1, 10, 3) == [3, 6, 9, 10]  # fresh: log point 0 done
    assert segment_ends(5, 10, 3) == [6, 9, 10]  # resumed after log point 4
    assert segment_ends(4, 10, 3) == [6, 9, 10]
    assert segment_ends(11, 10, 3) == []


def test_plan_pieces_splits_restored_lanes_into_chunks():
    carry = {"x": np.arange(10) + 4}
    pieces = plan_pieces(20, 4, [Piece(4, 14, 3, carry)])
    assert [(p.start, p.stop, p.logged) for p in pieces] == [(4, 8, 3), (8, 12, 3), (12, 14, 3), (14, 18, 0),
                                                               (18, 20, 0)]
    for p in pieces[:3]:
        np.testing.assert_array_equal(p.carry["x"], np.arange(p.start, p.stop))
    assert [(p.start, p.stop) for p in plan_pieces(10, 4, [], done=4)] == [(4, 8), (8, 10)]
    np.testing.assert_array_equal(chunk_rows(3, 8), [0, 1, 2, 0, 0, 0, 0, 0])


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1.5, -1, 2**32])
def test_a_bad_root_seed_is_refused_naming_it(learner, seed):
    with pytest.raises(ValueError, match=f"seed={seed} is not allowed"):
        sweep(learner, AXES, seeds=2, seed=seed)


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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_lanes": 0}, "max_lanes=0 is not allowed"),
        ({"block_lanes": 0}, "block_lanes=0 is not allowed"),
        ({"checkpoint_every": 0, "checkpoint_dir": "{tmp}/c"}, "checkpoint_every=0 is not allowed"),
        ({"resume": True}, "resume=True needs a checkpoint folder"),
        ({"checkpoint_every": 100}, "checkpoint_every=100 needs a checkpoint folder"),
        ({"resume": True, "checkpoint_dir": "{tmp}/missing"}, "there is no checkpoint folder"),
        ({"resume": True, "checkpoint_dir": "{tmp}/other"}, "holds something else"),
        ({"checkpoint_dir": "{tmp}/other"}, "holds something else"),
        ({"resume": True, "checkpoint_dir": "{tmp}/empty"}, "is empty"),
    ],
)
def test_bad_runs_fail_before_compiling(learner, options, message, tmp_path, monkeypatch):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a checkpoint")
    (tmp_path / "empty").mkdir()
    options = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in options.items()}
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=message):
        sweep(learner, AXES, seeds=2, **options)
    assert (tmp_path / "other" / "notes.txt").read_text() == "not a checkpoint"
