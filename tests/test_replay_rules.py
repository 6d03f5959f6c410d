"""The priority rules against direct NumPy computations: rank-based PER, ReaPER (across the ring's
wrap, several environments interleaved) and the article's annealed rule."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxq.replay as replay

ITEM = {"x": jnp.float32(0)}
EPS = 1e-6


def test_rank_per_ranks_equal_a_sort_and_set_the_probabilities():
    buffer = replay.make("per-rank", capacity=40)
    hp = buffer.hparams(alpha=0.8)
    state = buffer.init(ITEM)
    state = buffer.add(state, {"x": jnp.zeros(30)}, None, None, hp)
    rng = np.random.default_rng(0)
    td = rng.normal(0, 3, 30).astype(np.float32)
    state = buffer.set_priorities(state, jnp.arange(30), jnp.asarray(td), hp, 0.0)
    state = buffer.add(state, {"x": jnp.zeros(5)}, None, None, hp)  # new items store max |td|: a tie
    state = buffer.set_priorities(state, jnp.array([0]), jnp.array([0.01]), hp, 0.0)
    magnitude = np.abs(td)
    magnitude[0] = 0.01
    magnitude = np.concatenate([magnitude, np.full(5, np.abs(td).max())])
    order = np.argsort(-magnitude, kind="stable")  # ties by slot index
    ranks = np.empty(35, int)
    ranks[order] = np.arange(1, 36)
    np.testing.assert_array_equal(buffer.ranks(state)[:35], ranks)
    assert np.all(np.asarray(buffer.ranks(state))[35:] == 0)
    p = ranks.astype(float) ** -0.8
    np.testing.assert_allclose(buffer.probabilities(state)[:35], p / p.sum(), rtol=1e-5)


def reaper_reference(slots, capacity, streams):
    """R of every slot from the history of what it holds: ``slots[s] = (env, time, episode, last, p)``."""
    r = np.zeros(capacity)
    segments = []
    for env in range(streams):
        held = sorted((v[1], s) for s, v in slots.items() if v[0] == env)
        run = []
        for _, s in held:
            if run and slots[run[-1]][2] != slots[s][2]:
                segments.append(run)
                run = []
            run.append(s)
        if run:
            segments.append(run)
    sums = [sum(slots[s][4] for s in seg) for seg in segments]
    finished = [slots[seg[-1]][3] for seg in segments]
    longest = max([total for total, done in zip(sums, finished) if done], default=0.0)
    for seg, total, done in zip(segments, sums, finished):
        denominator = total if done else max(longest, total)
        cum = np.cumsum([slots[s][4] for s in seg])
        r[seg] = cum / denominator
    return r


def test_reaper_reliabilities_equal_a_per_episode_computation_across_the_wrap():
    capacity, streams, steps_per_add = 24, 2, 2
    buffer = replay.make("reaper", capacity=capacity, streams=streams)
    hp = buffer.hparams(alpha=0.5, omega=0.7)
    state = buffer.init(ITEM)
    rng = np.random.default_rng(3)
    add = jax.jit(buffer.add)
    update = jax.jit(buffer.set_priorities)
    episode = list(range(streams))
    length = [int(rng.integers(2, 8)) for _ in range(streams)]
    step_in_episode = [0] * streams
    slots, ptr, time, max_p = {}, 0, 0, 1.0
    checked = 0
    for round_ in range(40):  # 160 items through a ring of 24: wraps 6 times
        ids, lasts = [], []
        for _ in range(steps_per_add):
            for env in range(streams):
                last = step_in_episode[env] == length[env] - 1
                slots[ptr] = (env, time, episode[env], last, max_p)
                ids.append(episode[env])
                lasts.append(last)
                ptr = (ptr + 1) % capacity
                step_in_episode[env] += 1
                if last:
                    episode[env] += streams
                    step_in_episode[env] = 0
                    length[env] = int(rng.integers(2, 8))
            time += 1
        k = steps_per_add * streams
        state = add(state, {"x": jnp.zeros(k)}, jnp.array(ids), jnp.array(lasts), hp)
        if round_ % 3 == 2:
            held = np.array(sorted(slots))
            chosen = rng.choice(held, 6, replace=False)
            td = rng.normal(0, 10.0 ** rng.uniform(-2, 1, 6)).astype(np.float32)
            state = update(state, jnp.asarray(chosen), jnp.asarray(td), hp, 0.5)
            for s, d in zip(chosen, td):
                env, t, ep, last, _ = slots[s]
                slots[s] = (env, t, ep, last, float(np.float32(abs(d)) + np.float32(EPS)))
            max_p = max(max_p, max(slots[s][4] for s in chosen))
            expected_r = reaper_reference(slots, capacity, streams)
            np.testing.assert_allclose(buffer.reliabilities(state), expected_r, rtol=2e-5)
            p = np.array([slots[s][4] if s in slots else 0.0 for s in range(capacity)])
            psi = expected_r**0.7 * p**0.5
            np.testing.assert_allclose(buffer.probabilities(state), psi / psi.sum(), rtol=5e-5)
            checked += 1
    assert checked >= 10 and int(state.size) == capacity
    assert 0 < expected_r.min() and expected_r.max() == 1.0


def test_annealed_rule_follows_the_article_with_rho_from_moving_moments():
    capacity = 16
    buffer = replay.make("annealed", capacity=capacity)
    hp = buffer.hparams(rho_rate=0.3)
    state = buffer.init(ITEM)
    state = buffer.add(state, {"x": jnp.zeros(12)}, None, None, hp)
    rng = np.random.default_rng(5)
    td_store = np.full(capacity, 1.0)
    m1, m2, seen = np.zeros(capacity), np.zeros(capacity), np.zeros(capacity, bool)
    max_p = 1.0
    for progress in (0.0, 0.3, 0.6, 1.0):
        chosen = rng.choice(12, 8, replace=False)
        td = rng.normal(0.5, 1.0, 8).astype(np.float32)
        state = buffer.set_priorities(state, jnp.asarray(chosen), jnp.asarray(td), hp, progress)
        for s, d in zip(chosen, td.astype(np.float64)):
            td_store[s] = abs(d) + EPS
            m1[s] = 0.7 * m1[s] + 0.3 * d if seen[s] else d
            m2[s] = 0.7 * m2[s] + 0.3 * d * d if seen[s] else d * d
            seen[s] = True
        max_p = max(max_p, td_store[chosen].max())
        rho = np.where(m2 > 0, np.sqrt(np.maximum(m2 - m1**2, 0) / np.where(m2 > 0, m2, 1)), 0.0)
        np.testing.assert_allclose(buffer.rho(state), rho, atol=2e-4)
        alpha, omega = 0.7 + (0.1 - 0.7) * progress, 0.0 + 0.5 * progress
        leaf = td_store[:12] ** alpha * np.maximum(1 - rho[:12], EPS) ** omega
        np.testing.assert_allclose(buffer.probabilities(state)[:12], leaf / leaf.sum(), rtol=2e-4)
    assert rho.max() > 0.1  # the test exercises rho, not only its zero
    # a new item enters at max_priority^alpha at the progress of the last update (alpha 0.1 at the end)
    state = buffer.add(state, {"x": jnp.zeros(1)}, None, None, hp)
    leaves = np.asarray(buffer.probabilities(state)) * float(state.tree[0])
    np.testing.assert_allclose(leaves[12], max_p**0.1, rtol=1e-5)


def exact_ranks(td):
    """Rank of every entry of ``td`` (1 = largest), ties by index."""
    order = np.lexsort((np.arange(td.size), -td))
    ranks = np.empty(td.size, int)
    ranks[order] = np.arange(1, td.size + 1)
    return ranks


def test_rank_per_with_rerank_every_sorts_every_rth_update_and_looks_ranks_up_in_between():
    capacity, every, alpha = 24, 3, 0.7
    buffer = replay.make("per-rank", capacity=capacity, rerank_every=every)
    hp = buffer.hparams(alpha=alpha)
    state = buffer.init(ITEM)
    add, update = jax.jit(buffer.add), jax.jit(buffer.set_priorities)
    rng = np.random.default_rng(2)
    td, leaf = np.zeros(capacity, np.float32), np.zeros(capacity)
    size, ptr, max_p, snapshot, stale = 0, 0, np.float32(1.0), None, 0
    for call in range(14):  # 56 items through 24 slots: the ring wraps
        slots = (ptr + np.arange(4)) % capacity
        state = add(state, {"x": jnp.zeros(4)}, None, None, hp)
        td[slots], leaf[slots] = max_p, 1.0  # new items: the largest |delta| so far, rank 1
        ptr, size = (ptr + 4) % capacity, min(size + 4, capacity)
        chosen = rng.choice(size, 6)  # repeats allowed: a slot keeps its largest |delta|
        errors = rng.normal(0, 2.0, 6).astype(np.float32)
        state = update(state, jnp.asarray(chosen), jnp.asarray(errors), hp, 0.0)
        magnitude = {s: np.abs(errors)[chosen == s].max() for s in set(chosen.tolist())}
        for s, m in magnitude.items():
            td[s] = m
        max_p = max(max_p, np.abs(errors).max())
        exact = exact_ranks(td[:size])
        np.testing.assert_array_equal(buffer.ranks(state)[:size], exact)  # ranks() is always exact
        if call % every == 0:  # a full sort: every leaf from the exact ranks
            leaf[:size] = exact.astype(float) ** -alpha
            snapshot = td[:size].copy()
        else:  # only the updated leaves change: ranks looked up in the last sort's |delta| values
            for s, m in magnitude.items():
                rank = 1 + np.sum(snapshot > m)
                leaf[s] = float(rank) ** -alpha
                stale += rank != exact[s]
        np.testing.assert_allclose(buffer.probabilities(state)[:size], leaf[:size] / leaf[:size].sum(), rtol=2e-5)
    assert stale > 5  # between sorts the looked-up ranks do differ from the exact ones
