"""Contact-normal rows of the lander's reduced velocity, for the position correction and the
continuous-collision step.

A row ``J_k`` maps the reduced velocity ``u = (v_x, v_y, omega, qd_0, qd_1)`` (see
:mod:`kinematics`) to the normal velocity of one contact slot. A slot belongs to one leg, so its
row involves the hull's three velocities and that leg's joint rate only; it is stored as its hull
part and one joint coefficient, with the leg of each row fixed by its position (arrays follow
:mod:`kinematics`: structure axes first, batch axes last).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.envs.lunar_lander.kinematics import total

N_SLOTS = 4  # two contact points per leg
SLOT_LEGS = (0, 0, 1, 1)  # contact slot -> leg


@dataclasses.dataclass(frozen=True)
class Rows:
    """Rows ``J_k``: ``hull [K, 3]`` (the hull's x, y and angular coefficients) and ``joint [K]``
    (the coefficient of leg ``legs[k]``'s joint rate); ``legs`` is a static tuple."""

    hull: jax.Array
    joint: jax.Array
    legs: tuple

    def masked(self, keep: jax.Array) -> "Rows":
        """The rows with those where ``keep [K]`` is False set to zero."""
        return Rows(self.hull * keep[:, None], self.joint * keep, self.legs)

    def apply(self, u: jax.Array) -> jax.Array:
        """``J u`` for velocities ``u [5]``: ``[K]``."""
        return total(self.hull * u[None, :3], 1) + self.joint * jnp.stack([u[3 + leg] for leg in self.legs])

    def through(self, minv: jax.Array) -> jax.Array:
        """``M^-1 J^T``: ``[5, K]``, the velocity change per unit impulse of each row."""
        cols = [
            total(minv[:, :3] * self.hull[k][None], 1) + minv[:, 3 + leg] * self.joint[k]
            for k, leg in enumerate(self.legs)
        ]
        return jnp.stack(cols, 1)
