"""Every learner's init, step and log run jitted and un-jitted, with the same results."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

import jaxq
from jaxq.learners import LEARNERS, make_learner
from jaxq.learners.base import step_randomness

STEPS = 4


def encoded_defaults(learner):
    return {k: jnp.asarray(learner.encode(k, v)) for k, v in learner.defaults().items()}


class LearnerVariantsTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*sorted(LEARNERS))
    def test_init_step_log(self, name):
        env, params = jaxq.make("Branching")  # has state depths, so every feature map applies
        learner = make_learner(name, env, params, steps=STEPS, log_every=STEPS)
        hp = encoded_defaults(learner)

        def run(key):
            carry = learner.init(key, hp)
            for _ in range(STEPS):
                bits, env_key = step_randomness(carry.key, carry.t, learner.random_words)
                carry = learner.step(carry, hp, bits, env_key)
            logs = learner.log(carry, hp, jnp.int32(1))
            return carry.replace(episodes=carry.episodes.next_interval()), logs

        key = jax.random.PRNGKey(3)
        carry, logs = self.variant(run)(key)
        # the reference: the learner's own compiled loop over the same steps
        ref_carry, ref_logs = jax.jit(lambda k: learner.run(learner.init(k, hp), hp, 1, 1))(key)
        chex.assert_trees_all_close(carry, ref_carry, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(logs, jax.tree.map(lambda x: x[0], ref_logs), rtol=1e-5, atol=1e-6)
        self.assertEqual(int(carry.t), STEPS)
        finite = {k: v for k, v in logs.items() if k not in ("train_return", "train_length")}  # NaN: no episode ended
        self.assertTrue(all(np.all(np.isfinite(x)) for x in jax.tree.leaves(finite)))
