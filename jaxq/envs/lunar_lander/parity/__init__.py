"""Parity of the LunarLander port with Gymnasium's Box2D environment.

* :mod:`.box2d_reference` drives the real ``LunarLander-v3`` (state injection, drops, episodes);
  it imports Gymnasium and Box2D, which are optional (the ``dev`` and ``bench`` extras), so
  nothing here imports it at package import time.
* :mod:`.compare` runs the port and Box2D side by side and writes the parity tables
  (``python experiments/lunar_parity.py [--quick]``).
"""
