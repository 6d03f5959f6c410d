"""The seed article's annealed, reliability-aware rule (its "ReaPER+"), as the article states it.

    P(i) proportional to (|delta_i| + eps)^alpha(t) * (1 - rho_i)^omega(t),

``alpha(t)`` annealed linearly 0.7 -> 0.1 and ``omega(t)`` 0 -> 0.5 over ``progress`` ``t``. (The
article calls the second exponent ``beta``; jaxq names it ``omega``, the exponent of reliability
in ReaPER, because ``beta`` is the importance-sampling exponent of every prioritised buffer.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParams, range_hparam
from jaxq.replay.base import ReplayState, anneal, written
from jaxq.replay.prioritised import PRIORITY_EPS, PrioritisedBuffer, alpha_hparam, beta_hparams, store_max


def rho(mean: jax.Array, mean_square: jax.Array) -> jax.Array:
    """``rho = sqrt(max(m2 - m1^2, 0)) / sqrt(m2)`` (0 where ``m2 = 0``): TD-error spread over its RMS, in [0, 1]."""
    variance = jnp.maximum(mean_square - mean**2, 0.0)
    return jnp.where(mean_square > 0, jnp.sqrt(variance / jnp.where(mean_square > 0, mean_square, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class AnnealedBuffer(PrioritisedBuffer):
    """The article's annealed rule, ``P(i) ~ (|delta_i| + eps)^alpha(t) * max(1 - rho_i, eps)^omega(t)``.

    How jaxq defines ``rho`` and why. The article measures reliability by "the variance of the TD
    error" ("a moving average of TD standard deviation"), calls ``rho`` the "normalised
    reliability", and says low-variance samples gain probability as training goes on. Only a
    *normalised TD-error spread* fits both the formula and that sentence (with ``rho`` = reliability,
    a growing ``omega`` would favour *unreliable* samples). So, per slot:

    * ``m1``, ``m2``: exponential moving averages (weight ``rho_rate`` on the newest value) of the
      signed TD error and of its square over the slot's replays; the first replay sets them to
      ``delta`` and ``delta^2`` (no bias towards 0);
    * ``rho = std / rms = sqrt(m2 - m1^2) / sqrt(m2)``, in [0, 1]: 0 when the slot's TD error is the
      same at every replay, 1 when its TD errors average to zero (pure noise). It is scale-free (a
      transition with large errors is not unreliable for that alone) and needs no normalisation
      across slots, so ``(1 - rho)^omega`` is defined for every ``omega >= 0``. A slot not yet
      replayed has ``rho = 0``.

    ``1 - rho`` is floored at ``priority_eps`` so no written item gets probability 0. Give signed TD
    errors (absolute ones work, but then ``rho`` measures the spread of ``|delta|``). Because the
    exponents move with ``progress``, every update recomputes every leaf (``O(N)``); a new item
    gets ``max_priority^alpha`` at the ``progress`` of the last update. Importance weights anneal
    ``beta`` 0.4 -> 1 as in PER (the article does not say; set both to 0 for none).
    """

    name = "annealed"
    hyperparameters = {
        "alpha": alpha_hparam(0.7, doc="TD-error exponent at progress 0"),
        "alpha_final": alpha_hparam(0.1, name="alpha_final", doc="TD-error exponent at progress 1"),
        "omega": alpha_hparam(0.0, name="omega", doc="exponent of 1 - rho at progress 0"),
        "omega_final": alpha_hparam(0.5, name="omega_final", doc="exponent of 1 - rho at progress 1"),
        **beta_hparams(0.4, 1.0),
        "priority_eps": PRIORITY_EPS,
        "rho_rate": range_hparam("rho_rate", 0.1, "weight of the newest TD error in the moving averages "
                                 "behind rho, in (0, 1]", 0.0, 1.0, low_open=True),
    }

    def _init_rule(self) -> dict[str, jax.Array]:
        zeros = jnp.zeros(self.capacity, jnp.float32)
        return {"td": zeros, "mean": zeros, "mean_square": zeros, "seen": jnp.zeros(self.capacity, bool),
                "progress": jnp.float32(0.0)}

    def _on_add(self, priority, slots, episode, last):
        return {**priority, "td": priority["td"].at[slots].set(priority["max_priority"]),
                "mean": priority["mean"].at[slots].set(0.0), "mean_square": priority["mean_square"].at[slots].set(0.0),
                "seen": priority["seen"].at[slots].set(False)}

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        return priority["max_priority"] ** anneal(hp["alpha"], hp["alpha_final"], priority["progress"])

    def rho(self, state: ReplayState) -> jax.Array:
        """``float32[capacity]``: ``rho`` of every slot (0 for slots not yet replayed)."""
        return rho(state.priority["mean"], state.priority["mean_square"])

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        old = state.priority
        p = jnp.abs(td_errors) + hp["priority_eps"]
        td = store_max(old["td"], indices, p)
        # a slot given twice keeps the TD error of largest magnitude (the larger signed value on a tie)
        candidate = jnp.where(p == td[indices], td_errors, -jnp.inf)
        delta = jnp.full(self.capacity, -jnp.inf).at[indices].max(candidate)[indices]
        seen, rate = old["seen"][indices], hp["rho_rate"]
        mean = jnp.where(seen, (1 - rate) * old["mean"][indices] + rate * delta, delta)
        mean_square = jnp.where(seen, (1 - rate) * old["mean_square"][indices] + rate * delta**2, delta**2)
        priority = {**old, "td": td, "mean": old["mean"].at[indices].set(mean),
                    "mean_square": old["mean_square"].at[indices].set(mean_square),
                    "seen": old["seen"].at[indices].set(True), "progress": progress,
                    "max_priority": jnp.maximum(old["max_priority"], jnp.max(p))}
        state = state.replace(priority=priority)
        alpha = anneal(hp["alpha"], hp["alpha_final"], progress)
        omega = anneal(hp["omega"], hp["omega_final"], progress)
        trust = jnp.maximum(1.0 - self.rho(state), hp["priority_eps"])
        log_leaf = alpha * jnp.log(jnp.where(td > 0, td, 1.0)) + omega * jnp.log(trust)
        leaves = jnp.where(written(state, self.capacity), jnp.exp(log_leaf), 0.0)  # XLA:CPU's pow: ~20x slower
        return state.replace(tree=self._rebuild(leaves))
