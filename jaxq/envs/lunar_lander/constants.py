"""Constants of LunarLander-v3: scene geometry, materials, engine and solver settings.

Everything is in SI units (metres, kilograms, seconds, radians). Lengths that the original game
states in pixels are divided by ``SCALE = 30`` pixels per metre. Mass properties are derived here
from the shapes and densities (polygon area, centroid and second moment), not typed in.

Frames: "lander frame" is relative to the lander's body origin and rotated by its angle. ``legs[0]``
is the leg on the lander's +x side, ``legs[1]`` the one on its -x side (the order in which the
original creates them, with side index ``i = -1`` and then ``i = +1``).
"""

from __future__ import annotations

import math

import numpy as np

# --- time, viewport, observation scaling -----------------------------------------------------
FPS = 50
DT = 1.0 / FPS
SCALE = 30.0
VIEWPORT_W = 600
VIEWPORT_H = 400
W = VIEWPORT_W / SCALE  # 20 m
H = VIEWPORT_H / SCALE  # 13.333 m

# --- terrain ----------------------------------------------------------------------------------
CHUNKS = 11
CHUNK_X = tuple(W / (CHUNKS - 1) * i for i in range(CHUNKS))  # 0, 2, ..., 20
N_EDGES = CHUNKS - 1
EDGE_LENGTH_X = W / (CHUNKS - 1)  # 2 m
HELIPAD_Y = H / 4  # pad height used by the observation (3.3333)
HELIPAD_X1 = CHUNK_X[CHUNKS // 2 - 1]  # 8
HELIPAD_X2 = CHUNK_X[CHUNKS // 2 + 1]  # 12
SMOOTHING = 0.33  # y[i] = 0.33 (h[i-1] + h[i] + h[i+1]); deliberately not 1/3

# --- engines ----------------------------------------------------------------------------------
MAIN_ENGINE_POWER = 13.0
SIDE_ENGINE_POWER = 0.6
INITIAL_RANDOM = 1000.0
MAIN_ENGINE_Y = 4.0 / SCALE  # nominal nozzle offset below the origin
SIDE_ENGINE_AWAY = 12.0 / SCALE
SIDE_ENGINE_HEIGHT_Y = 14.0 / SCALE  # height used for the y part of the side-engine point
SIDE_ENGINE_HEIGHT_X = 17.0 / SCALE  # ... and the (different) one used for its x part
MAIN_FUEL_COST = 0.30
SIDE_FUEL_COST = 0.03

# --- bodies -----------------------------------------------------------------------------------
LANDER_POLY = np.array(
    [(-14, 17), (-17, 0), (-17, -10), (17, -10), (17, 0), (14, 17)], dtype=np.float64
) / SCALE
LANDER_DENSITY = 5.0
LEG_DENSITY = 1.0
LEG_AWAY = 20.0 / SCALE
LEG_DOWN = 18.0 / SCALE
LEG_HALF_W = 2.0 / SCALE
LEG_HALF_H = 8.0 / SCALE
LEG_SIDE = (-1.0, 1.0)  # side index i of legs[0], legs[1]
LEG_REFERENCE_ANGLE = tuple(0.05 * i for i in LEG_SIDE)  # joint reference angle = leg angle at creation
LEG_MOTOR_SPEED = 0.3  # rad/s toward the extended limit
LEG_MOTOR_TORQUE = 40.0  # N m
# Joint limits in the "fold" coordinate f = -i * q (q the joint angle): both legs extend to f = 0.4
# and fold up to f = 0.9.
LEG_EXTENDED = 0.4
LEG_FOLDED = 0.9

# --- materials --------------------------------------------------------------------------------
LANDER_FRICTION = 0.1
LEG_FRICTION = 0.2  # the original leaves the leg fixture at the engine's default
TERRAIN_FRICTION = 0.1

# --- gravity and wind -------------------------------------------------------------------------
GRAVITY = -10.0
WIND_POWER = 15.0
TURBULENCE_POWER = 1.5
WIND_INDEX_RANGE = (-9999, 9999)  # integers in [low, high)
MAX_EPISODE_STEPS = 1000

# --- the rigid-body engine's tolerances (Box2D 2.3) -------------------------------------------
LINEAR_SLOP = 0.005
ANGULAR_SLOP = 2.0 / 180.0 * math.pi
POLYGON_RADIUS = 2.0 * LINEAR_SLOP  # skin of every polygon and edge
CONTACT_DISTANCE = 2.0 * POLYGON_RADIUS  # core separation at which a manifold point exists (0.02)
BAUMGARTE = 0.2
MAX_LINEAR_CORRECTION = 0.2
MAX_ANGULAR_CORRECTION = 8.0 / 180.0 * math.pi
MAX_TRANSLATION = 2.0  # per step
MAX_ROTATION = 0.5 * math.pi  # per step
SLEEP_STEPS = 25  # 0.5 s at 50 Hz: the island sleeps after this many calm steps in a row
LINEAR_SLEEP_TOLERANCE = 0.01
ANGULAR_SLEEP_TOLERANCE = 2.0 / 180.0 * math.pi
# Axis choice in polygon-vs-edge collision: a polygon face wins only if it separates clearly more.
AXIS_RELATIVE_TOL = 0.98
AXIS_ABSOLUTE_TOL = 0.001


def polygon_mass(vertices: np.ndarray, density: float) -> tuple[float, np.ndarray, float]:
    """Mass, centroid and moment of inertia about the centroid of a convex CCW polygon.

    Sums the triangles ``(0, v_k, v_{k+1})``: area ``A = sum cross(v_k, v_{k+1}) / 2``, centroid
    ``sum (v_k + v_{k+1}) cross / (6 A)``, second moment about the origin
    ``sum cross (|v_k|^2 + v_k . v_{k+1} + |v_{k+1}|^2) / 12``, shifted to the centroid.
    """
    v0, v1 = vertices, np.roll(vertices, -1, axis=0)
    cross = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    area = 0.5 * cross.sum()
    centroid = ((v0 + v1) * cross[:, None]).sum(axis=0) / (6.0 * area)
    second = (cross * ((v0 * v0).sum(1) + (v0 * v1).sum(1) + (v1 * v1).sum(1))).sum() / 12.0
    mass = density * area
    inertia = density * second - mass * float(centroid @ centroid)
    return float(mass), centroid, float(inertia)


_LEG_BOX = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64) * np.array([LEG_HALF_W, LEG_HALF_H])
LANDER_MASS, _LANDER_COM, LANDER_INERTIA = polygon_mass(LANDER_POLY, LANDER_DENSITY)
LANDER_COM_Y = float(_LANDER_COM[1])  # the centre of mass sits this far above the body origin (x = 0)
LEG_MASS, _, LEG_INERTIA = polygon_mass(_LEG_BOX, LEG_DENSITY)
LEG_BOX = _LEG_BOX  # leg vertices about its centre (= its origin), CCW from the lower-left corner

# The leg's joint anchor in leg coordinates is (i * LEG_AWAY, LEG_DOWN); the anchor on the lander
# is its origin. LEG_ANCHOR[k] is that leg-side anchor for legs[k].
LEG_ANCHOR = tuple((i * LEG_AWAY, LEG_DOWN) for i in LEG_SIDE)
# Inertia of a leg about its joint axis: the diagonal of the reduced mass matrix for that joint.
LEG_JOINT_INERTIA = LEG_INERTIA + LEG_MASS * (LEG_AWAY**2 + LEG_DOWN**2)

# --- the reset step ---------------------------------------------------------------------------
# The original starts the legs 0.6 m off their joints and lets the engine snap them into place
# during the one physics step that reset performs (position projection, which a reduced-coordinate
# model cannot reproduce). The state after that step is an exact affine function of the force on
# the lander during the step (Fx, including the wind force, Fy) and the turbulence torque tau,
# fitted on the real engine over 80 resets (largest residual 3e-6 m, 2e-5 rad):
#   origin    = (10 + RESET_X_FX Fx + RESET_X_TAU tau,
#                H + RESET_Y_SNAP + g dt^2 + RESET_Y_FY Fy)
#   angle     = RESET_ANGLE_0 + RESET_ANGLE_FX Fx + RESET_ANGLE_TAU tau
#   velocity  = (RESET_VX_FX Fx + RESET_VX_TAU tau, g dt + RESET_VY_FY Fy)   (lander COM)
#   omega     = RESET_OMEGA_FX Fx + RESET_OMEGA_TAU tau
#   q_k       = RESET_Q0[k] + RESET_Q_FX Fx + RESET_Q_TAU tau,   joint speeds 0
RESET_X_FX = 7.9827e-05
RESET_X_TAU = 3.9716e-05
RESET_Y_SNAP = 13.3354689 - H + 0.004  # the snap's lift; 0.004 = -g dt^2 at the default gravity
RESET_Y_FY = 8.0663e-05
RESET_ANGLE_0 = 6.6e-06
RESET_ANGLE_FX = -9.2499e-06
RESET_ANGLE_TAU = 4.3947e-04
RESET_VX_FX = 4.0428e-03
RESET_VX_TAU = -4.5787e-04
RESET_VY_FY = 4.0332e-03
RESET_OMEGA_FX = -4.5788e-04
RESET_OMEGA_TAU = 2.1754e-02
RESET_Q0 = (0.5418770, -0.5421510)
RESET_Q_FX = -2.748e-06
RESET_Q_TAU = 1.306e-04
