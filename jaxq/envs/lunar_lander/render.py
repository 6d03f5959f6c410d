"""Pure-JAX rendering of LunarLander states to RGB images (no pygame, jit- and vmap-safe).

Every pixel centre is tested against each shape of the scene (sky above the terrain line, the two
pad flags, the hull, both legs and the engine flames), using the signed distance to a convex
polygon's edges, which also gives one pixel of anti-aliasing. ``jax.vmap(render, (0, None))``
turns a batch of states into a batch of frames, e.g. for a GIF of many vmapped episodes.

The picture follows Gymnasium's: a 600 × 400 view of the 20 m × 13.3 m world, black sky over a
white surface, yellow pad flags, a purple lander, and flames where an engine fired this step.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import body_poses, engine_flags, terrain_heights

PX = 1.0 / 30.0  # metres per pixel at full size
WORLD_W, WORLD_H = 600 * PX, 400 * PX
CHUNK_X = np.linspace(0.0, WORLD_W, 11)
PAD_X = (8.0, 12.0)
PAD_Y = WORLD_H / 4

SKY = (0, 0, 0)
GROUND = (255, 255, 255)
BODY_FILL = (128, 102, 230)
BODY_EDGE = (77, 77, 128)
POLE = (255, 255, 255)
FLAG = (204, 204, 0)
FLAME_OUTER = (255, 96, 48)
FLAME_INNER = (255, 214, 96)

# Shapes in their body frames (metres). The hull and the leg boxes are the physics shapes.
HULL = np.array([(-14, 17), (-17, 0), (-17, -10), (17, -10), (17, 0), (14, 17)], np.float32) * PX
LEG = np.array([(-2, -8), (2, -8), (2, 8), (-2, 8)], np.float32) * PX
HULL_BOTTOM = -10 * PX
SIDE_ENGINE_Y = 14 * PX
HULL_SIDE_AT_ENGINE = 14.5 * PX  # |x| of the hull's side at the side engines' height


def _rotate(points: jax.Array, angle: jax.Array) -> jax.Array:
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([c * points[..., 0] - s * points[..., 1],
                      s * points[..., 0] + c * points[..., 1]], axis=-1)


def _place(local: Any, origin: jax.Array, angle: jax.Array) -> jax.Array:
    """Body-frame points ``[V, 2]`` in world coordinates."""
    return origin + _rotate(jnp.asarray(local, jnp.float32), angle)


def _signed_distance(xy: jax.Array, poly: jax.Array) -> jax.Array:
    """Distance-like field of a convex CCW polygon: < 0 inside, ≈ the distance to it outside."""
    a = poly
    b = jnp.roll(poly, -1, axis=0)
    edge = b - a
    normal = jnp.stack([edge[:, 1], -edge[:, 0]], axis=-1)  # outward for counter-clockwise order
    normal = normal / jnp.maximum(jnp.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    offsets = jnp.einsum("...k,vk->...v", xy, normal) - jnp.sum(a * normal, axis=-1)
    return offsets.max(axis=-1)


def _coverage(distance: jax.Array, pixel: float) -> jax.Array:
    """Fraction of a pixel covered, from the signed distance of its centre (1-pixel ramp)."""
    return jnp.clip(0.5 - distance / pixel, 0.0, 1.0)


def _paint(image: jax.Array, alpha: jax.Array, color: Sequence[int]) -> jax.Array:
    return image + alpha[..., None] * (jnp.asarray(color, jnp.float32) - image)


def _terrain_distance(xy: jax.Array, heights: jax.Array) -> jax.Array:
    """Signed distance to the terrain line (< 0 below the surface), perpendicular to each chunk."""
    x, y = xy[..., 0], xy[..., 1]
    surface = jnp.interp(x, jnp.asarray(CHUNK_X, jnp.float32), heights)
    chunk = jnp.clip(jnp.floor(x / 2.0).astype(jnp.int32), 0, 9)
    slope = (heights[chunk + 1] - heights[chunk]) / 2.0
    return (y - surface) / jnp.sqrt(1.0 + slope**2)


def _flames(origin: jax.Array, angle: jax.Array, main_power: jax.Array,
            side_power: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """(triangle, strength) for the main flame and a flame on each side of the hull.

    ``side_power`` is signed: > 0 for the engine that pushes the lander toward +x (its flame leaves
    the hull's -x side), < 0 for the other one.
    """
    length = 0.25 + 0.45 * main_power
    main = [(-0.12, HULL_BOTTOM), (0.0, HULL_BOTTOM - length), (0.12, HULL_BOTTOM)]
    flames = [(_place(main, origin, angle), main_power)]
    for sign in (1.0, -1.0):  # flame on the -x side (pushes toward +x), then the +x side
        power = jnp.maximum(sign * side_power, 0.0)
        root = -sign * HULL_SIDE_AT_ENGINE
        tip = root - sign * (0.12 + 0.3 * power)
        tri = [(root, SIDE_ENGINE_Y + 0.07), (tip, SIDE_ENGINE_Y), (root, SIDE_ENGINE_Y - 0.07)]
        if sign < 0:  # keep counter-clockwise order after mirroring
            tri = tri[::-1]
        flames.append((_place(tri, origin, angle), power))
    return flames


def draw(terrain: jax.Array, origin: jax.Array, angle: jax.Array, main_power: jax.Array,
         side_power: jax.Array, *, scale: float = 1.0) -> jax.Array:
    """Render a scene given its parts.

    Args:
        terrain: ``[11]`` surface heights at x = 0, 2, ..., 20 m.
        origin: ``[3, 2]`` body origins of (lander, legs[0], legs[1]); angle: ``[3]``.
        main_power: main-engine throttle of the last step (0 when it did not fire).
        side_power: signed side-engine throttle of the last step: > 0 pushes toward +x (action 3).
        scale: static; 1.0 gives Gymnasium's 400 × 600 frame, 0.5 gives 200 × 300.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    height, width = int(round(400 * scale)), int(round(600 * scale))
    pixel = WORLD_W / width
    cols = (jnp.arange(width, dtype=jnp.float32) + 0.5) * pixel
    rows = WORLD_H - (jnp.arange(height, dtype=jnp.float32) + 0.5) * pixel
    xy = jnp.stack(jnp.meshgrid(cols, rows), axis=-1)  # [H, W, 2]; row 0 is the top of the view
    terrain = jnp.asarray(terrain, jnp.float32)
    origin = jnp.asarray(origin, jnp.float32)
    angle = jnp.asarray(angle, jnp.float32)

    image = jnp.broadcast_to(jnp.asarray(SKY, jnp.float32), (height, width, 3))
    image = _paint(image, _coverage(_terrain_distance(xy, terrain), pixel), GROUND)
    pole_w = max(pixel, PX) / 2
    flag_top = PAD_Y + 50 * PX
    for x in PAD_X:
        pole = jnp.array([(x - pole_w, PAD_Y), (x + pole_w, PAD_Y), (x + pole_w, flag_top),
                          (x - pole_w, flag_top)], jnp.float32)
        flag = jnp.array([(x, flag_top - 10 * PX), (x + 25 * PX, flag_top - 5 * PX),
                          (x, flag_top)], jnp.float32)
        image = _paint(image, _coverage(_signed_distance(xy, pole), pixel), POLE)
        image = _paint(image, _coverage(_signed_distance(xy, flag), pixel), FLAG)
    for tri, power in _flames(origin[0], angle[0], jnp.asarray(main_power, jnp.float32),
                              jnp.asarray(side_power, jnp.float32)):
        d = _signed_distance(xy, tri)
        on = (power > 0).astype(jnp.float32)
        image = _paint(image, on * _coverage(d, pixel), FLAME_OUTER)
        image = _paint(image, on * _coverage(d + 0.04, pixel), FLAME_INNER)
    shapes = [(HULL, 0), (LEG, 1), (LEG, 2)]
    for local, body in shapes[1:] + shapes[:1]:  # legs first, the hull on top
        # Grown by half a pixel, like a rasteriser that fills boundary pixels.
        d = _signed_distance(xy, _place(local, origin[body], angle[body])) - 0.5 * pixel
        image = _paint(image, _coverage(d, pixel), BODY_FILL)
        image = _paint(image, _coverage(jnp.abs(d) - 0.5 * pixel, pixel), BODY_EDGE)  # outline
    return jnp.round(image).astype(jnp.uint8)


def render(state: Any, params: Any = None, *, scale: float = 1.0) -> jax.Array:
    """``uint8 [H, W, 3]`` picture of a LunarLander state (400 × 600 at ``scale=1``).

    ``params`` is accepted for the gymnax-style signature; the picture depends on the state only.
    """
    del params
    poses = body_poses(state)
    engines = engine_flags(state)
    side = engines["side_power"] * engines["side_direction"]
    return draw(terrain_heights(state), poses["origin"], poses["angle"], engines["main_power"], side,
                scale=scale)


__all__ = ["draw", "render"]
