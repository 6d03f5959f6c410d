"""Checkpoints: checksums, bit-identical resumes (any chunk size or interval), recovery from a corrupt
latest step, and refusals (another run's folder, a changed configuration)."""

import json
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import sweep_worker
import jaxq.sweep
from jaxq import checkpoint
from jaxq.sweep import (LaneShapes, Outputs, Saver, compile_program, fingerprint, plan_grid, plan_layout, restore,
                        sweep)

AXES = sweep_worker.SPEC["axes"]
RUN = dict(seeds=4, seed=3)


@pytest.fixture(scope="module")
def learner():
    return sweep_worker.learner(sweep_worker.SPEC)  # Q-learning on Chain(5), 600 steps


@pytest.fixture(scope="module")
def reference(learner):
    return sweep(learner, AXES, **RUN)


def identical(a, b):
    """Bit for bit: every log and every exported leaf."""
    pairs = [(a.logs, b.logs), (a.finals, b.finals)]
    return all(jax.tree.structure(x) == jax.tree.structure(y)
               and all(np.array_equal(u, v, equal_nan=True) for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
               for x, y in pairs)


class Disconnect(Exception):
    pass


def disconnect_after(segments):
    seen = []

    def progress(status):
        seen.append(status)
        if len(seen) == segments:
            raise Disconnect

    return progress


def interrupted(learner, folder, segments, **options):
    with pytest.raises(Disconnect):
        sweep(learner, AXES, **RUN, checkpoint_dir=str(folder), progress=disconnect_after(segments), **options)


# -- checksums -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint32, np.uint8, np.float16, np.bool_])
def test_checksum_is_the_same_wherever_it_is_computed(dtype):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(8, 3, 5)) * 50).astype(dtype)
    mesh = Mesh(np.asarray(jax.devices()), ("lanes",))
    where = {"host": x, "device": jax.device_put(x), "sharded": jax.device_put(x, NamedSharding(mesh, P("lanes")))}
    sums = {name: checkpoint.checksum({"x": value})["['x']"] for name, value in where.items()}
    sums["jitted"] = f"{int(checkpoint._device_sum(jax.numpy.asarray(x), np.uint32(0))):08x}"
    assert len(set(sums.values())) == 1, sums


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_checksum_of_large_shards_summed_by_xla_equals_numpys(dtype):
    x = np.random.default_rng(1).integers(0, 255, size=(4, checkpoint._BLOCK // 2 + 3)).astype(dtype)
    mesh = Mesh(np.asarray(jax.devices()), ("lanes",))
    sharded = jax.device_put(x, NamedSharding(mesh, P("lanes")))
    assert all(s.data.size >= checkpoint._BLOCK for s in sharded.addressable_shards)  # the XLA path
    assert checkpoint.checksum({"x": sharded}) == checkpoint.checksum({"x": x})  # NumPy, on the host


def test_checksum_notices_a_flipped_bit_and_swapped_words():
    x = np.arange(1000, dtype=np.float32)
    flipped = x.copy()
    flipped.view(np.uint32)[500] ^= 1
    swapped = x.copy()
    swapped[[3, 7]] = swapped[[7, 3]]
    sums = {checkpoint.checksum([v])["[0]"] for v in (x, flipped, swapped, x.reshape(10, 100))}
    assert len(sums) == 3  # the reshaped array has the same words at the same positions


def test_changes_name_what_changed():
    saved = {"axes": {"gamma": [0.9, 0.99]}, "seeds": 4, "learner": {"steps": 600}}
    now = {"axes": {"gamma": [0.9, 0.95]}, "seeds": 4, "learner": {"steps": 600, "target": "double"}}
    assert checkpoint.changes(saved, now) == ["axes.gamma: [0.9, 0.99] -> [0.9, 0.95]",
                                              "learner.target: (absent) -> double"]


# -- resume ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("segments", [2, 5])  # inside the first chunk; inside the second
def test_resume_after_interruption_is_bit_identical(learner, reference, tmp_path, segments):
    interrupted(learner, tmp_path, segments, max_lanes=8, checkpoint_every=200)
    resumed = sweep(learner, AXES, **RUN, max_lanes=8, checkpoint_dir=str(tmp_path), checkpoint_every=200,
                    resume=True)
    assert identical(resumed, reference)
    assert resumed.timing["resumed_step"] == segments - 1
    again = sweep(learner, AXES, **RUN, checkpoint_dir=str(tmp_path), resume=True)  # a finished run: nothing to do
    assert identical(again, reference) and again.timing["saves"] == 0


def test_resume_with_another_chunk_size_and_interval(learner, reference, tmp_path):
    """Saved with chunks of 8 lanes every 200 steps, resumed with chunks of 4 every 300 steps: the saved
    chunk runs as two, and the pieces waiting their turn are saved with the one under way."""
    interrupted(learner, tmp_path, 1, max_lanes=8, checkpoint_every=200)
    progress = disconnect_after(1)
    with pytest.raises(Disconnect):
        sweep(learner, AXES, **RUN, max_lanes=4, checkpoint_dir=str(tmp_path), checkpoint_every=300, resume=True,
              progress=progress)
    latest = max(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit())
    meta = json.loads((tmp_path / str(latest) / "meta" / "metadata").read_text())
    assert meta["done"] == 0
    assert [(g["start"], g["stop"], g["logged"]) for g in meta["groups"]] == [(0, 4, 4), (4, 8, 3)]
    resumed = sweep(learner, AXES, **RUN, max_lanes=6, checkpoint_dir=str(tmp_path), resume=True)
    assert identical(resumed, reference)


def test_restore_says_where_the_run_stands(learner, tmp_path):
    """Interrupted in the second of two chunks of 8 lanes at log point 4: lanes 0 .. 7 are finished
    (their logs from their file), lanes 8 .. 15 resume after log point 4 straight on the devices."""
    interrupted(learner, tmp_path, 5, max_lanes=8, checkpoint_every=200)
    grid = plan_grid(learner, AXES, **RUN)
    shapes = LaneShapes.of(learner, grid)
    layout = plan_layout(grid.lanes, shapes.lane_bytes(learner.num_logs), 0, jax.device_count(), "cpu", max_lanes=8)
    folder = checkpoint.Folder(tmp_path, {"fingerprint": fingerprint(grid.config(learner)),
                                          "config": grid.config(learner)}, resume=True)
    outputs = Outputs.empty(shapes, grid.lanes, learner.num_logs)
    start = restore(folder, compile_program(learner, layout, shapes), outputs)
    folder.close()
    logs = outputs.logs
    assert (start.step, start.done, [f["name"] for f in start.finished]) == (5, 8, ["0-8"])
    [piece] = start.pieces
    assert (piece.start, piece.stop, piece.logged) == (8, 16, 5)
    assert all(isinstance(x, jax.Array) and x.shape[0] == 8 for x in jax.tree.leaves(piece.carry))
    assert (logs["error"][:8] != 0).all() and (logs["error"][8:, :5] != 0).all() and (logs["error"][8:, 5:] == 0).all()


def test_a_save_is_due_once_the_last_ones_cost_is_its_share_of_the_time_since():
    class Folder:
        state_saved_at, state_save_s = None, None

    folder = Folder()
    saver = Saver(folder, None, lanes=1, num_logs=10, step=0, done=0, finished=[], cost_aware=True)
    assert saver.due(3)  # the first segment end: nothing saved yet
    folder.state_saved_at = time.perf_counter()
    assert not saver.due(3) and saver.due(10)  # the last save is still writing; a piece's end always saves
    folder.state_save_s = 1.0  # due 1.0 / 0.05 = 20 s after it started
    folder.state_saved_at = time.perf_counter() - 15
    assert not saver.due(3)
    folder.state_saved_at = time.perf_counter() - 21
    assert saver.due(3)
    saver.cost_aware = False  # an interval the user chose: every segment
    folder.state_saved_at = time.perf_counter()
    assert saver.due(3)


def test_a_folder_times_its_saves_of_arrays_only(tmp_path):
    folder = checkpoint.Folder(tmp_path, {"fingerprint": "0" * 16, "config": {}}, resume=False)
    folder.save(0, {"x": np.arange(1000, dtype=np.float32)}, {})
    started = folder.state_saved_at
    folder.save(1, None, {})  # waits for step 0's files first
    assert folder.state_saved_at == started and 0 < folder.state_save_s < time.perf_counter() - started
    folder.close()
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [0, 1]


def test_the_default_interval_skips_costly_saves_and_resumes_bit_identically(learner, reference, tmp_path,
                                                                              monkeypatch):
    """Saves so costly that none but the first and the pieces' ends are due: two chunks of 6 segments
    save 3 steps (after segment 1, 6 and 12; the cheap save of chunk 1's logs does not make chunk 2's
    first segment due); interrupted after segment 9, the run resumes from step 1."""
    monkeypatch.setattr(jaxq.sweep, "SAVE_SHARE", 1e-12)
    every_segment = sweep(learner, AXES, **RUN, max_lanes=8, checkpoint_dir=str(tmp_path / "all"),
                          checkpoint_every=100)
    assert every_segment.timing["saves"] == 12 and every_segment.timing["chunks"] == 2
    costly = sweep(learner, AXES, **RUN, max_lanes=8, checkpoint_dir=str(tmp_path / "costly"))
    assert costly.timing["saves"] == 3 and identical(costly, reference)
    interrupted(learner, tmp_path / "cut", 9, max_lanes=8)
    assert sorted(int(p.name) for p in (tmp_path / "cut").iterdir() if p.name.isdigit()) == [0, 1]
    resumed = sweep(learner, AXES, **RUN, max_lanes=8, checkpoint_dir=str(tmp_path / "cut"), resume=True)
    assert resumed.timing["resumed_step"] == 1 and identical(resumed, reference)


def test_a_corrupt_latest_step_falls_back_to_the_one_before(learner, reference, tmp_path):
    interrupted(learner, tmp_path, 3, checkpoint_every=100)
    steps = sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit())
    assert steps == [0, 1, 2]
    victim = max((p for p in (tmp_path / "2" / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.warns(checkpoint.CheckpointWarning, match="checkpoint step 2 .* is unusable"):
        resumed = sweep(learner, AXES, **RUN, checkpoint_dir=str(tmp_path), checkpoint_every=100, resume=True)
    assert resumed.timing["resumed_step"] == 1 and identical(resumed, reference)
    assert (tmp_path / "rejected" / "2").is_dir()


def test_no_usable_step_is_an_error_naming_each(learner, tmp_path):
    interrupted(learner, tmp_path, 2, checkpoint_every=100)
    for step in ("0", "1"):
        (tmp_path / step / "meta" / "metadata").write_text("{not json")
    with pytest.warns(checkpoint.CheckpointWarning), pytest.raises(ValueError, match="no usable checkpoint step"):
        sweep(learner, AXES, **RUN, checkpoint_dir=str(tmp_path), resume=True)


def test_a_changed_configuration_or_a_fresh_run_is_refused(learner, tmp_path):
    interrupted(learner, tmp_path, 1, checkpoint_every=300)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        sweep(learner, AXES, **RUN, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"Changed: axes\.gamma: \[0\.9, 0\.99\] -> \[0\.9, 0\.95\]"):
        sweep(learner, {"depth": [2, 5], "gamma": [0.9, 0.95]}, **RUN, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match="Changed: seeds: 4 -> 5"):
        sweep(learner, AXES, seeds=5, seed=3, checkpoint_dir=str(tmp_path), resume=True)


# -- a learner with a large carry (a stand-in for replay buffers) --------------------------------------
class BufferLearner:
    """Writes a random number per step into a ring buffer of ``slots`` floats per lane and logs the
    buffer's mean; greedy-evaluation-like extra work only at even log points (un-batched ``index``)."""

    def __init__(self, slots, steps=64, log_every=8):
        self.slots, self.steps, self.steps_per_log = slots, steps, log_every
        self.num_logs = steps // log_every

    def defaults(self):
        return {"scale": 1.0}

    def encode(self, name, value):
        return float(value)

    def describe(self):
        return {"learner": "buffer", "slots": self.slots, "steps": self.steps, "log_every": self.steps_per_log}

    def init(self, key, hp):
        return {"buffer": jax.numpy.zeros(self.slots), "key": key, "t": jax.numpy.int32(0)}

    def export(self, carry):
        return {"last": carry["buffer"][:3], "t": carry["t"]}

    def log(self, carry, hp, index):
        extra = jax.lax.cond(index % 2 == 0, lambda: carry["buffer"].max(), lambda: jax.numpy.float32(jax.numpy.nan))
        return {"mean": carry["buffer"].mean(), "max_at_even": extra}

    def run(self, carry, hp, first, num_logs):
        def step(c, _):
            value = hp["scale"] * jax.random.uniform(jax.random.fold_in(c["key"], c["t"]))
            return {**c, "buffer": c["buffer"].at[c["t"] % self.slots].set(value), "t": c["t"] + 1}, None

        def interval(c, index):
            c = jax.lax.scan(step, c, None, length=self.steps_per_log)[0]
            return c, self.log(c, hp, index)

        return jax.lax.scan(interval, carry, first + jax.numpy.arange(num_logs))


def test_large_carries_run_in_budgeted_chunks_and_resume_bit_identically(tmp_path):
    learner = BufferLearner(slots=16_384)  # 64 KiB of carry per lane
    axes = {"scale": [1.0, 2.0]}
    whole = sweep(learner, axes, seeds=16, seed=1)
    budget = 8 * (2 * 64 * 1024 + 1024)  # 8 lanes, carries counted twice when checkpointing on CPU
    with pytest.raises(Disconnect):
        sweep(learner, axes, seeds=16, seed=1, memory_budget=budget, checkpoint_dir=str(tmp_path / "c"),
              checkpoint_every=16, progress=disconnect_after(7))
    resumed = sweep(learner, axes, seeds=16, seed=1, memory_budget=budget, checkpoint_dir=str(tmp_path / "c"),
                    checkpoint_every=16, resume=True)
    assert resumed.timing["lanes_per_call"] == 8 and resumed.timing["chunks"] == 4
    assert identical(resumed, whole)  # logs and exports
    assert whole.finals["last"].shape == (2, 16, 3) and (whole.finals["t"] == 64).all()
    evaluated = whole.logs["max_at_even"]  # logged only at even log points
    assert np.isnan(evaluated[..., 1::2]).all() and not np.isnan(evaluated[..., ::2]).any()


class TypedKeyLearner(BufferLearner):
    def init(self, key, hp):
        return {**super().init(key, hp), "typed": jax.random.wrap_key_data(key)}


def test_typed_keys_in_a_carry_are_refused_before_compiling(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=r"\['typed'\] holds typed PRNG keys"):
        sweep(TypedKeyLearner(slots=4), {}, seeds=2, checkpoint_dir=str(tmp_path / "c"))
