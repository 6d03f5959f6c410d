"""GridWorld from a text layout: walls, pits, a goal, a step penalty and slippery moves.

Layout characters::

    S  start (exactly one)          .  F  empty / frozen floor
    G  goal (terminal, goal_reward) P  H  pit / hole (terminal, pit_reward)
    #  wall (not a state)

Actions 0..3 move left, down, right, up (FrozenLake's order). With probability ``slip`` the agent
moves instead in one of the two perpendicular directions (``slip/2`` each); FrozenLake's slippery ice
is ``slip = 2/3``. Moving into a wall or off the grid leaves the agent in place. Entering the goal or
a pit ends the episode with ``goal_reward`` / ``pit_reward``; every other step costs ``step_reward``.
The observation is the normalised ``(row, column)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxq.envs.core import FiniteEnv, replace_checked
from jaxq.types import TabularMDP
from jaxq.validation import check_choice, check_count, check_probability, check_range

EMPTY, GOAL, PIT, WALL = 0, 1, 2, 3
_CELL_CODES = {".": EMPTY, "F": EMPTY, "S": EMPTY, "G": GOAL, "P": PIT, "H": PIT, "#": WALL}
_MOVES = np.array([(0, -1), (1, 0), (0, 1), (-1, 0)])  # left, down, right, up

PRESETS: dict[str, dict[str, Any]] = {
    "4x4": {
        "layout": ("...G", ".#.P", "....", "S..."),
        "params": {"goal_reward": 10.0, "pit_reward": -10.0, "step_reward": -0.1, "slip": 0.0},
    },
    "FrozenLake-4x4": {
        "layout": ("SFFF", "FHFH", "FFFH", "HFFG"),
        "params": {"goal_reward": 1.0, "pit_reward": 0.0, "step_reward": 0.0, "slip": 2 / 3},
    },
}


@struct.dataclass
class GridState(environment.EnvState):
    cell: jax.Array  # int32 row-major cell index
    time: jax.Array


@struct.dataclass
class GridParams(environment.EnvParams):
    goal_reward: jax.Array | float = 10.0
    pit_reward: jax.Array | float = -10.0
    step_reward: jax.Array | float = -0.1
    slip: jax.Array | float = 0.0
    max_steps_in_episode: jax.Array | int = 100


def parse_layout(layout: str | Sequence[str]) -> tuple[np.ndarray, int]:
    """Cell codes ``[rows, cols]`` and the start cell index of a text layout.

    Raises:
        ValueError: ragged rows, an unknown character, no goal, or not exactly one start.
    """
    rows = layout.strip().splitlines() if isinstance(layout, str) else list(layout)
    rows = [r.strip() for r in rows]
    if not rows or not rows[0]:
        raise ValueError(f"layout={layout!r} is empty; give at least one row of cells")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"layout rows are ragged (lengths {sorted(widths)}); every row needs the same length")
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            if ch not in _CELL_CODES:
                raise ValueError(
                    f"layout has unknown character {ch!r} at row {r}, column {c}; "
                    f"allowed: {''.join(_CELL_CODES)}"
                )
    text = "".join(rows)
    if "G" not in text:
        raise ValueError("layout has no goal 'G'; a GridWorld needs at least one goal")
    if text.count("S") != 1:
        raise ValueError(f"layout has {text.count('S')} start cells 'S'; it needs exactly one")
    codes = np.array([[_CELL_CODES[ch] for ch in row] for row in rows])
    return codes, text.index("S")


class GridWorld(FiniteEnv):
    """Grid MDP; the layout is static, rewards and slip are traced parameters."""

    def __init__(self, layout: str | Sequence[str] = PRESETS["4x4"]["layout"]):
        super().__init__()
        codes, self.start = parse_layout(layout)
        self.rows, self.cols = codes.shape
        self.num_states = self.rows * self.cols
        self.cell_codes = codes.reshape(-1)
        r, c = np.divmod(np.arange(self.num_states), self.cols)
        target_r = np.clip(r[:, None] + _MOVES[None, :, 0], 0, self.rows - 1)
        target_c = np.clip(c[:, None] + _MOVES[None, :, 1], 0, self.cols - 1)
        target = target_r * self.cols + target_c
        blocked = self.cell_codes[target] == WALL
        stuck = (self.cell_codes == WALL) | (self.cell_codes == GOAL) | (self.cell_codes == PIT)
        self.moves = np.where(blocked | stuck[:, None], np.arange(self.num_states)[:, None], target)
        norm = lambda x, n: x / max(n - 1, 1)  # noqa: E731
        self.coordinates = np.stack([norm(r, self.rows), norm(c, self.cols)], 1).astype(np.float32)

    @property
    def name(self) -> str:
        return "GridWorld"

    @property
    def num_actions(self) -> int:
        return 4

    @property
    def default_params(self) -> GridParams:
        return GridParams()

    def make_params(self, **overrides: Any) -> GridParams:
        number = lambda name: lambda v: float(check_range(name, v))  # noqa: E731
        checks = {
            "goal_reward": number("goal_reward"),
            "pit_reward": number("pit_reward"),
            "step_reward": number("step_reward"),
            "slip": lambda v: float(check_probability(v, "slip")),
            "max_steps_in_episode": lambda v: check_count(v, "max_steps_in_episode"),
        }
        return replace_checked(self.name, self.default_params, checks, overrides)

    def get_obs(self, state: GridState, params=None, key=None) -> jax.Array:
        return jnp.asarray(self.coordinates)[state.cell]

    def _entry_reward(self, params: GridParams) -> jax.Array:
        """``[S]`` reward for entering each cell."""
        codes = jnp.asarray(self.cell_codes)
        return jnp.select(
            [codes == GOAL, codes == PIT], [params.goal_reward, params.pit_reward], params.step_reward
        ).astype(jnp.float32)

    def step_env(self, key, state: GridState, action, params: GridParams):
        u = jax.random.uniform(key)
        direction = jnp.where(u < params.slip / 2, action - 1, jnp.where(u < params.slip, action + 1, action)) % 4
        cell = jnp.asarray(self.moves, jnp.int32)[state.cell, direction]
        reward = self._entry_reward(params)[cell]
        terminated = jnp.asarray(self.cell_codes)[cell] != EMPTY
        state = GridState(cell=cell, time=state.time + 1)
        return self.get_obs(state), state, reward, terminated, {}

    def reset_env(self, key, params: GridParams):
        state = self.state_at(self.start)
        return self.get_obs(state), state

    def is_terminated(self, state: GridState, params: GridParams) -> jax.Array:
        return jnp.asarray(self.cell_codes)[state.cell] != EMPTY

    def state_index(self, state: GridState) -> jax.Array:
        return state.cell

    def state_at(self, index) -> GridState:
        return GridState(cell=jnp.asarray(index, jnp.int32), time=jnp.int32(0))

    def tabular(self, params: GridParams) -> TabularMDP:
        S = self.num_states
        a = np.arange(4)
        onehot = lambda d: jax.nn.one_hot(self.moves[:, d], S, dtype=jnp.float32)  # noqa: E731
        P = (1 - params.slip) * onehot(a) + params.slip / 2 * (onehot((a - 1) % 4) + onehot((a + 1) % 4))
        codes = jnp.asarray(self.cell_codes)
        return TabularMDP(
            P=P,
            R=P @ self._entry_reward(params),
            terminal=(codes == GOAL) | (codes == PIT),
            valid=codes != WALL,
            features=jnp.asarray(self.coordinates),
            initial=jax.nn.one_hot(self.start, S, dtype=jnp.float32),
        )

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)


def make_gridworld(preset: str | None = None, layout: str | Sequence[str] | None = None,
                   **options: Any) -> tuple[GridWorld, GridParams]:
    """``make("GridWorld")`` is the 4x4 goal/pit preset; also ``preset="FrozenLake-4x4"`` or ``layout=``."""
    if preset is not None and layout is not None:
        raise ValueError("give either preset= or layout=, not both")
    if layout is None:
        chosen = PRESETS[check_choice("preset", preset or "4x4", PRESETS)]
        layout, options = chosen["layout"], {**chosen["params"], **options}
    env = GridWorld(layout)
    return env, env.make_params(**options)
