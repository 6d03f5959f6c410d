"""Every learner's init, advance and log run jitted and un-jitted, with the results of its own
compiled loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

import jaxq
from jaxq.learners import LEARNERS, make_learner

STEPS = 8
OPTIONS = {"dqn": {"batch_size": 2, "learning_starts": 2, "buffer_size": 16, "train_freq": 2, "widths": (8,),
                   "eval_every": STEPS, "eval_episodes": 2}}  # several updates and an evaluation in 8 steps


def encoded_defaults(learner):
    return {k: jnp.asarray(learner.encode(k, v)) for k, v in learner.defaults().items()}


class LearnerVariantsTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*sorted(LEARNERS))
    def test_init_advance_log(self, name):
        env, params = jaxq.make("Branching")  # has state depths, so every feature map applies
        learner = make_learner(name, env, params, steps=STEPS, log_every=STEPS, **OPTIONS.get(name, {}))
        hp = encoded_defaults(learner)

        def run(key):
            carry = learner.advance(learner.init(key, hp), hp, jnp.int32(1))
            logs = learner.log(carry, hp, jnp.int32(1))
            return learner.next_interval(carry), logs

        key = jax.random.PRNGKey(3)
        carry, logs = self.variant(run)(key)
        # the reference: the learner's own compiled loop over the same steps
        ref_carry, ref_logs = jax.jit(lambda k: learner.run(learner.init(k, hp), hp, 1, 1))(key)
        chex.assert_trees_all_close(carry, ref_carry, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(logs, jax.tree.map(lambda x: x[0], ref_logs), rtol=1e-5, atol=1e-6)
        self.assertEqual(int(carry.t), STEPS)
        maybe_nan = ("train_return", "train_length")  # NaN when no episode ended in the interval
        self.assertTrue(all(np.all(np.isfinite(v)) for k, v in logs.items() if k not in maybe_nan), logs)
