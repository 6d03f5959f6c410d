"""The studies behind ``jaxq reproduce``: one module per figure of the seed documents.

Each module ``jaxq.studies.<name>`` exposes ``run(out: Path, size: str = "full") -> dict`` that
writes into ``out`` a ``summary.json`` (setup, numbers, the claim tested and a one-line verdict), a
``curves.npz`` with the raw data and a PNG readable on its own, and returns the summary. Sizes:
``"full"`` (>= 1000 seeds for the tabular studies, 16-32 agents per method for the DQN studies),
``"quick"`` (a few hundred seeds or a few DQN agents: all studies in minutes on a laptop CPU) and
``"tiny"`` (seconds; for tests). ``experiments/<name>.py`` runs one study from a shell.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jaxq.validation import check_choice

STUDIES: dict[str, str] = {
    "vi_contraction": "1. Value iteration contracts at rate gamma (branching MDP)",
    "tabular_q": "2. Tabular Q-learning on the same MDP: staircase and convergence",
    "cosine_fa": "3. Cosine function approximation plateaus above its projection floor",
    "chain_depth": "4. Deeper chains: larger and more volatile error (257-parameter MLP)",
    "discount_sweep": "5. Discount sweep on chain-64: error grows as gamma -> 1",
    "bellman_backups": "6. Bellman backups on chain-5: exact values propagate one state per sweep",
    "per_state_bias": "7. Per-state bias grows with the distance from the terminal",
    "td_gallery": "8. TD-variant gallery: a new variant is one small function",
    "dqn_lunar": "9. DQN vs Double DQN on the LunarLander port, and their policies in Box2D",
    "replay": "10. Replay schemes for DQN: uniform, PER, rank-PER, ReaPER and the article's annealed rule",
}
SIZES = ("tiny", "quick", "full")
# Studies whose full size is hours of training: `jaxq reproduce` runs them at most at this size; the
# full size is their own script (experiments/<name>.py).
REPRODUCE_AT_MOST = {"dqn_lunar": "quick", "replay": "quick"}


def reproduce_size(name: str, size: str) -> str:
    """The size study ``name`` runs at in ``jaxq reproduce --size size``."""
    cap = REPRODUCE_AT_MOST.get(name)
    return cap if cap is not None and SIZES.index(size) > SIZES.index(cap) else size


def load(name: str) -> ModuleType:
    """The module of study ``name`` (raises ``ValueError`` for an unknown name)."""
    check_choice("study", name, STUDIES)
    return importlib.import_module(f"jaxq.studies.{name}")
