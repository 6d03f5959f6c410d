"""Replay buffers: the sum tree's sampling law and numerics, the ring, importance weights, lanes,
duplicates, bad input, and the compiled loop's in-place updates."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq.replay as replay
from jaxq.replay import sumtree

ITEM = {"obs": jnp.zeros(3, jnp.float32), "action": jnp.int32(0)}


def items(start, k):
    ids = jnp.arange(start, start + k)
    return {"obs": jnp.stack([ids, ids, ids], 1).astype(jnp.float32), "action": ids.astype(jnp.int32)}


def filled(name, capacity, n, **static):
    """A buffer of ``name`` holding items 0 .. n-1 (episodes of 4 steps)."""
    buffer = replay.make(name, capacity=capacity, **static)
    hp = buffer.hparams()
    state = buffer.init(ITEM)
    for start in range(0, n, 4):
        k = min(4, n - start)
        ids = jnp.arange(start, start + k)
        state = buffer.add(state, items(start, k), ids // 4, ids % 4 == 3, hp)
    return buffer, hp, state


# -- the sampling law -------------------------------------------------------------------------------
def total_variation(counts, p):
    return 0.5 * np.abs(counts / counts.sum() - p).sum()


def multinomial_tv(p, draws):
    """Expected TV distance of ``draws`` i.i.d. samples from ``p`` (normal approximation per slot)."""
    return 0.5 * np.sum(np.sqrt(2 * p * (1 - p) / (np.pi * draws)))


def draw_counts(sampler, n_slots, calls):
    keys = jax.random.split(jax.random.PRNGKey(7), calls)
    idx = jax.jit(jax.vmap(sampler))(keys)
    return np.bincount(np.asarray(idx).ravel(), minlength=n_slots)[:n_slots]


def test_sampling_frequencies_match_p_for_priorities_spanning_nine_decades():
    rng = np.random.default_rng(0)
    n = 1000
    leaves = 10.0 ** rng.uniform(-6, 3, n)
    leaves[rng.choice(n, 50, replace=False)] = 0.0  # never drawn
    tree = sumtree.build(jnp.asarray(leaves, jnp.float32), n)
    p = leaves / leaves.sum()
    calls = 2000
    counts = draw_counts(lambda k: sumtree.sample(tree, n, k, 256)[0], n, calls)
    bound = multinomial_tv(p, calls * 256)  # stratified draws are less noisy than i.i.d. ones
    assert total_variation(counts, p) < bound
    assert counts[leaves == 0].sum() == 0

    # the bound catches wrong laws: a tree over p^0.9, and leaves rewritten without their ancestors
    wrong = sumtree.build(jnp.asarray(leaves**0.9, jnp.float32), n)
    assert total_variation(draw_counts(lambda k: sumtree.sample(wrong, n, k, 256)[0], n, calls), p) > 5 * bound
    shrunk = leaves * rng.uniform(0.01, 1.0, n)
    stale = tree.at[sumtree.offset(sumtree.depth(n)) + jnp.arange(n)].set(jnp.asarray(shrunk, jnp.float32))
    q = shrunk / shrunk.sum()
    counts = draw_counts(lambda k: sumtree.sample(stale, n, k, 256)[0], n, calls)
    assert total_variation(counts, q) > 5 * multinomial_tv(q, calls * 256)


def test_buffer_sample_reports_the_probabilities_it_draws_with():
    buffer, hp, state = filled("per", 64, 50)
    rng = np.random.default_rng(1)
    td = rng.normal(0, 10.0 ** rng.uniform(-3, 2, 50))
    hp = buffer.hparams(alpha=0.7)
    state = buffer.set_priorities(state, jnp.arange(50), jnp.asarray(td, jnp.float32), hp, 0.0)
    expected = (np.abs(td) + 1e-6) ** 0.7
    expected /= expected.sum()
    np.testing.assert_allclose(buffer.probabilities(state)[:50], expected, rtol=2e-5)
    assert float(buffer.probabilities(state)[50:].sum()) == 0.0
    sample = jax.jit(buffer.sample, static_argnums=2)(state, jax.random.PRNGKey(0), 64, hp, 0.0)
    np.testing.assert_allclose(sample.probabilities, expected[np.asarray(sample.indices)], rtol=2e-5)
    counts = draw_counts(lambda k: buffer.sample(state, k, 64, hp, 0.0).indices, 64, 1600)[:50]
    assert total_variation(counts, expected) < multinomial_tv(expected, 1600 * 64)


@pytest.mark.parametrize("weights", ["batch", "memory"])
def test_importance_weights_follow_the_formula_with_beta_annealed(weights):
    buffer, hp, state = filled("per", 32, 20, weights=weights)
    td = jnp.linspace(-3.0, 5.0, 20)
    hp = buffer.hparams(alpha=0.6, beta=0.2, beta_final=0.8)
    state = buffer.set_priorities(state, jnp.arange(20), td, hp, 0.0)
    progress = 0.25
    sample = buffer.sample(state, jax.random.PRNGKey(3), 16, hp, progress)
    p_all = np.asarray(buffer.probabilities(state))[:20]
    p = np.asarray(sample.probabilities)
    n = 20
    beta = 0.2 + 0.6 * progress
    w = (n * p) ** -beta
    norm = (n * p.min()) ** -beta if weights == "batch" else (n * p_all.min()) ** -beta
    np.testing.assert_allclose(sample.weights, w / norm, rtol=1e-5)
    assert np.all(np.asarray(sample.weights) <= 1.0)


def test_ten_to_the_six_updates_keep_the_root_exact_and_never_draw_a_zero_leaf():
    capacity, batch, rounds = 30000, 500, 2000  # 10^6 leaf writes, duplicates included; sparse and dense levels
    tree = sumtree.empty(capacity)

    def round_(carry, t):
        tree, ok = carry
        key_idx, key_val, key_zero, key_draw = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), t), 4)
        scale = jnp.where(t < rounds // 2, 100.0, 1e-3)  # large priorities, then all of them shrink
        values = jax.random.uniform(key_val, (batch,), minval=0.1, maxval=1.0) * scale
        values = jnp.where(jax.random.uniform(key_zero, (batch,)) < 0.2, 0.0, values)
        tree = sumtree.set_leaves(tree, capacity, jax.random.randint(key_idx, (batch,), 0, capacity), values)
        slots, leaf, total, _ = sumtree.sample(tree, capacity, key_draw, 256)
        drawn = sumtree.leaves(tree, capacity)[slots]
        return (tree, ok & jnp.all(drawn > 0) & jnp.all(slots < capacity) & jnp.all(leaf == drawn)), None

    (tree, ok), _ = jax.jit(lambda tr: jax.lax.scan(round_, (tr, jnp.bool_(True)), jnp.arange(rounds)))(tree)
    assert bool(ok)
    leaves = np.asarray(sumtree.leaves(tree, capacity), np.float64)
    assert abs(float(tree[0]) - leaves.sum()) <= 1e-6 * leaves.sum()
    # every parent is exactly the float32 sum of its children, as if built from scratch
    np.testing.assert_array_equal(tree, sumtree.build(sumtree.leaves(tree, capacity), capacity))


# -- the ring -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["uniform", "per"])
def test_only_written_slots_are_sampled_and_a_full_ring_overwrites_the_oldest(name):
    buffer, hp, state = filled(name, 8, 5)
    idx = jax.vmap(lambda k: buffer.sample(state, k, 8, hp, 0.0).indices)(jax.random.split(jax.random.PRNGKey(0), 200))
    assert set(np.unique(idx)) == {0, 1, 2, 3, 4}
    for start in range(5, 13):
        state = buffer.add(state, items(start, 1), jnp.array([start]), jnp.array([False]), hp)
    assert int(state.size) == 8 and int(state.ptr) == 13 % 8
    stored = np.asarray(state.storage["action"])
    np.testing.assert_array_equal(stored, [8, 9, 10, 11, 12, 5, 6, 7])  # items 0 .. 4 gone, 5 .. 12 kept
    np.testing.assert_array_equal(buffer.newer(state, jnp.array([4, 5])), [0, 7])
    np.testing.assert_array_equal(buffer.read(state, jnp.array([5]))["action"], [5])


def test_new_items_enter_at_the_running_max_priority():
    buffer, hp, state = filled("per", 16, 4)
    hp = buffer.hparams(alpha=0.5)
    state = buffer.set_priorities(state, jnp.arange(4), jnp.array([0.5, 3.0, -9.0, 1.0]), hp, 0.0)
    state = buffer.add(state, items(4, 2), jnp.array([1, 1]), jnp.array([False, True]), hp)
    leaves = np.asarray(sumtree.leaves(state.tree, 16))
    np.testing.assert_allclose(leaves[4:6], (9.0 + 1e-6) ** 0.5, rtol=1e-6)
    assert np.all(leaves[6:] == 0)


@pytest.mark.parametrize("name", ["uniform", "per"])
def test_a_traced_empty_buffer_samples_slot_zero_with_weight_zero(name):
    buffer = replay.make(name, capacity=8)
    hp = buffer.hparams()
    sample = jax.jit(buffer.sample, static_argnums=2)(buffer.init(ITEM), jax.random.PRNGKey(0), 4, hp, 0.0)
    np.testing.assert_array_equal(sample.indices, 0)
    np.testing.assert_array_equal(sample.probabilities, 0.0)
    np.testing.assert_array_equal(sample.weights, 0.0)


# -- duplicates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["per", "per-rank", "reaper", "annealed"])
def test_duplicate_indices_give_one_result_whatever_their_order(name):
    buffer, hp, state = filled(name, 16, 12)
    indices = jnp.array([3, 3, 7, 3, 7, 1])
    td = jnp.array([1.0, -5.0, 2.0, 5.0, 0.5, -0.25])
    update = jax.jit(buffer.set_priorities)
    results = []
    for order in itertools.islice(itertools.permutations(range(6)), 0, 720, 71):
        order = jnp.array(order)
        new = update(state, indices[order], td[order], hp, 0.3)
        results.append(jax.tree.leaves(new))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# -- lanes ----------------------------------------------------------------------------------------------
LANE_OPTIONS = {"reaper": {"streams": 2}, "per-rank sorting every 5th update": {"rerank_every": 5}}


@pytest.mark.parametrize("name", [*replay.BUFFERS, "per-rank sorting every 5th update"])
def test_vmapped_over_512_lanes_each_lane_equals_its_own_run(name):
    buffer = replay.make(name.split()[0], capacity=32, **LANE_OPTIONS.get(name, {}))
    names = list(buffer.hyperparameters)

    def run(key, alpha):
        hp = {**buffer.hparams(), **({"alpha": alpha} if "alpha" in names else {})}

        def step(state, t):
            ids = t * 4 + jnp.arange(4)
            state = buffer.add(state, items(0, 4), (ids % 2) + 2 * (ids // 10), ids % 10 >= 8, hp)
            sample = buffer.sample(state, jax.random.fold_in(key, t), 8, hp, t / 12)
            td = jax.random.normal(jax.random.fold_in(key, 100 + t), (8,))
            return buffer.set_priorities(state, sample.indices, td, hp, t / 12), (sample.indices, sample.weights)

        return jax.lax.scan(step, buffer.init(ITEM), jnp.arange(12))

    keys = jax.random.split(jax.random.PRNGKey(0), 512)
    alphas = jnp.linspace(0.0, 1.0, 512)
    state, (idx, w) = jax.jit(jax.vmap(run))(keys, alphas)
    single = jax.jit(run)
    for lane in (0, 201, 511):
        s1, (i1, w1) = single(keys[lane], alphas[lane])
        np.testing.assert_array_equal(idx[lane], i1)
        np.testing.assert_allclose(w[lane], w1, rtol=1e-6)
        np.testing.assert_allclose(state.tree[lane], s1.tree, rtol=1e-6)
    if name != "uniform":
        assert len({tuple(np.asarray(idx[lane, -1])) for lane in range(512)}) > 100  # lanes differ


def test_under_vmap_the_full_sort_of_rank_per_runs_only_when_due():
    buffer = replay.make("per-rank", capacity=64, rerank_every=10)
    hp = buffer.hparams()
    state = jax.vmap(lambda _: buffer.add(buffer.init(ITEM), items(0, 40), None, None, hp))(jnp.arange(4))
    update = jax.vmap(lambda s: buffer.set_priorities(s, jnp.arange(8), jnp.linspace(-1, 1, 8), hp, 0.0))
    hlo = jax.jit(update).lower(state).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    entry = entry[:entry.index("\n}")]
    assert " sort(" in hlo and " while(" in entry
    assert " sort(" not in entry  # inside the loop that runs only when due, not hoisted out of it
    # the first update and every 10th after it sort: then leaves are the exact ranks' again
    for call in range(12):
        state = jax.jit(update)(state)
        exact = (np.asarray(buffer.ranks(jax.tree.map(lambda x: x[0], state)))[:40] ** -0.7)
        leaves = np.asarray(sumtree.leaves(state.tree[0], 64))[:40]
        assert np.allclose(leaves, exact, rtol=1e-5) == (call in (0, 10)), call


# -- the compiled loop updates in place -------------------------------------------------------------
HLO_TYPES = {"float32": "f32", "int32": "s32", "bool": "pred"}


def big_copies(hlo: str, arrays) -> list[str]:
    """``copy`` instructions of the compiled module whose result has the type and shape of one of ``arrays``."""
    wanted = {f"{HLO_TYPES[str(x.dtype)]}[{','.join(map(str, x.shape))}]" for x in arrays if x.size}
    return [line.strip() for line in hlo.splitlines()
            if (m := re.search(r"= (\w+\[[0-9,]*\])\{[0-9,]*\} copy\(", line)) and m.group(1) in wanted]


@pytest.mark.parametrize("name,weights", [("uniform", "batch"), ("per", "batch"), ("per", "memory"),
                                          ("reaper", "batch"), ("annealed", "batch")])
def test_a_donated_scan_of_add_sample_update_never_copies_the_storage_or_the_tree(name, weights):
    lanes, capacity = 4, 1024
    item = {"obs": jnp.zeros(8, jnp.float32), "next_obs": jnp.zeros(8, jnp.float32), "reward": jnp.float32(0)}
    buffer = replay.make(name, capacity=capacity, **({"weights": weights} if name != "uniform" else {}))
    hp = buffer.hparams()

    def run(state, key):
        def step(state, t):
            row = jnp.full((4, 8), t, jnp.float32)
            batch = {"obs": row, "next_obs": row + 1, "reward": row[:, 0]}
            state = buffer.add(state, batch, t + jnp.arange(4), jnp.zeros(4, bool), hp)
            sample = buffer.sample(state, jax.random.fold_in(key, t), 64, hp, 0.5)
            td = sample.experience["reward"] - sample.experience["obs"].sum(1)
            state = buffer.set_priorities(state, sample.indices, td, hp, 0.5)
            return state, sample.weights.sum()

        return jax.lax.scan(step, state, jnp.arange(8))

    keys = jax.random.split(jax.random.PRNGKey(0), lanes)
    state = jax.vmap(lambda _: buffer.init(item))(keys)
    hlo = jax.jit(jax.vmap(run), donate_argnums=0).lower(state, keys).compile().as_text()
    arrays = [*jax.tree.leaves(state.storage), state.tree]
    assert not big_copies(hlo, arrays)
    # the check sees copies: without donation the loop must copy its input storage
    undonated = jax.jit(jax.vmap(run)).lower(state, keys).compile().as_text()
    assert big_copies(undonated, jax.tree.leaves(state.storage))


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_input_is_a_value_error_naming_it_before_anything_compiles():
    with pytest.raises(ValueError, match="replay='nope'"):
        replay.make("nope")
    with pytest.raises(ValueError, match="capacity=0"):
        replay.make("per", capacity=0)
    with pytest.raises(ValueError, match="'streams' is not an option of replay 'per'"):
        replay.make("per", streams=2)
    with pytest.raises(ValueError, match="weights='max'"):
        replay.make("per", weights="max")
    with pytest.raises(ValueError, match="rerank_every=0"):
        replay.make("per-rank", rerank_every=0)
    with pytest.raises(ValueError, match="capacity=10 is not a multiple of streams=4"):
        replay.make("reaper", capacity=10, streams=4)
    buffer = replay.make("reaper", capacity=16, streams=2)
    for name, value in [("alpha", -0.1), ("beta", 1.5), ("beta_final", -1.0), ("omega", -0.2),
                        ("priority_eps", 0.0)]:
        with pytest.raises(ValueError, match=f"{name}="):
            buffer.hparams(**{name: value})
    with pytest.raises(ValueError, match="'gamma' is not a hyper-parameter"):
        buffer.hparams(gamma=0.9)
    with pytest.raises(ValueError, match="omega_final=-1"):
        replay.make("annealed").hparams(omega_final=-1)
    hp = buffer.hparams()
    state = buffer.init(ITEM)
    sample = jax.jit(buffer.sample, static_argnums=2)
    with pytest.raises(ValueError, match="empty buffer"):
        buffer.sample(state, jax.random.PRNGKey(0), 4, hp, 0.0)
    state = buffer.add(state, items(0, 4), jnp.arange(4), jnp.zeros(4, bool), hp)
    with pytest.raises(ValueError, match="batch_size=17 is larger than the capacity=16"):
        sample(state, jax.random.PRNGKey(0), 17, hp, 0.0)
    with pytest.raises(ValueError, match="progress=1.5"):
        buffer.sample(state, jax.random.PRNGKey(0), 4, hp, 1.5)
    with pytest.raises(ValueError, match="hp lacks 'omega'"):
        buffer.sample(state, jax.random.PRNGKey(0), 4, {k: v for k, v in hp.items() if k != "omega"}, 0.0)
    with pytest.raises(ValueError, match="hp lacks 'alpha'"):
        buffer.sample(state, jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="alpha=2"):
        buffer.sample(state, jax.random.PRNGKey(0), 4, {**hp, "alpha": jnp.float32(2.0)}, 0.0)
    with pytest.raises(ValueError, match="k=20 items"):
        buffer.add(state, items(0, 20), jnp.arange(20), jnp.zeros(20, bool), hp)
    with pytest.raises(ValueError, match="not a multiple of streams=2"):
        buffer.add(state, items(0, 3), jnp.arange(3), jnp.zeros(3, bool), hp)
    with pytest.raises(ValueError, match="needs episode"):
        buffer.add(state, items(0, 2), None, None, hp)
    with pytest.raises(ValueError, match="episode has shape"):
        buffer.add(state, items(0, 2), jnp.arange(3), jnp.zeros(2, bool), hp)
    with pytest.raises(ValueError, match="an item leaf has shape"):
        buffer.add(state, {"obs": jnp.zeros((2, 4)), "action": jnp.zeros(2, jnp.int32)}, jnp.arange(2),
                   jnp.zeros(2, bool), hp)
    with pytest.raises(ValueError, match="same length"):
        buffer.set_priorities(state, jnp.arange(4), jnp.zeros(3), hp, 0.0)
    with pytest.raises(ValueError, match=r"indices must be slots in \[0, 16\); got \[-1"):
        buffer.set_priorities(state, jnp.asarray([-1, 3]), jnp.ones(2), hp, 0.0)
    with pytest.raises(ValueError, match=r"got \[16\]"):
        buffer.set_priorities(state, jnp.asarray([16]), jnp.ones(1), hp, 0.0)
    with pytest.raises(ValueError, match="td_errors must be finite"):
        buffer.set_priorities(state, jnp.arange(2), jnp.asarray([1.0, jnp.nan]), hp, 0.0)
    with pytest.raises(ValueError, match=r"alpha has shape \(2,\); a buffer's hyper-parameters are scalars"):
        buffer.sample(state, jax.random.PRNGKey(0), 4, {**hp, "alpha": jnp.asarray([0.4, 0.6])}, 0.0)
    with pytest.raises(ValueError, match="batch_size=4.5 is not allowed"):
        buffer.sample(state, jax.random.PRNGKey(0), 4.5, hp, 0.0)
