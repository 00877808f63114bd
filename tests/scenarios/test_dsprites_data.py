"""Tests of the procedural dSprites (estimators/scenarios/dsprites_data.py): the grid, the images, the figure.

The renderer is checked against an independent whole-canvas renderer (numpy, one image at a time), and the
images against geometry measured from their pixels: areas, second and third moments, centroids. The full grid
of 737,280 images is hashed once to check that the only identical images are the symmetric ones.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from estimators.scenarios import dsprites_data as dd
from estimators.scenarios.dsprites_data import FACTOR_NAMES, FULL_GRID, TINY_GRID, Grid

HEART_AREA = 3.66194  # area of (x^2 + y^2 - 1)^3 <= x^2 y^3 (4001^2-point grid, error ~1e-5)


def _images(grid: Grid, rows) -> np.ndarray:
    return grid.render(grid.index_of(torch.tensor(rows))).numpy()


def test_factor_counts_order_and_values():
    assert FULL_GRID.N == 737_280 and FULL_GRID.factor_sizes == (3, 6, 40, 32, 32)
    assert FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert TINY_GRID.N == math.prod(TINY_GRID.factor_sizes) < 1000
    # the original's order: mixed radix, shape slowest, pos_y fastest
    expected = torch.tensor(list(itertools.product(*map(range, TINY_GRID.factor_sizes))))
    assert torch.equal(TINY_GRID.factors(torch.arange(TINY_GRID.N)), expected)
    assert torch.equal(TINY_GRID.index_of(expected), torch.arange(TINY_GRID.N))
    f = FULL_GRID.factors([0, 1, 32, 1024, 40 * 1024, 737_279])
    assert f.dtype == torch.int64 and f.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0],
                                                      [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [2, 5, 39, 31, 31]]
    v = FULL_GRID.factor_values(torch.arange(0, FULL_GRID.N, 97))
    fi = FULL_GRID.factors(torch.arange(0, FULL_GRID.N, 97)).double()
    assert v.dtype == torch.float64 and v.shape == (len(fi), 5)
    assert torch.equal(v[:, 0], fi[:, 0])
    assert torch.allclose(v[:, 1], 0.5 + 0.1 * fi[:, 1], rtol=0, atol=1e-15)
    assert torch.allclose(v[:, 2], 2 * math.pi * fi[:, 2] / 40, rtol=0, atol=1e-15)
    assert float(v[:, 2].max()) < 2 * math.pi  # [0, 2 pi): no duplicated endpoint
    assert torch.allclose(v[:, 3:], fi[:, 3:] / 31, rtol=0, atol=1e-15)


def _reference(grid: Grid, f) -> np.ndarray:
    """One image on the whole canvas, by numpy, with the geometry of the module docstring."""
    shape, scale, k, px, py = (int(a) for a in f)
    period = grid.orientations // math.gcd(grid.orientations, dd.SYMMETRY[shape])
    theta = 2 * math.pi * (k % period) / grid.orientations
    r = (0.5 + 0.5 * scale / (grid.scales - 1) if grid.scales > 1 else 1.0) * grid.bound_radius
    step = grid.size * (1 - 2 * dd.CENTRE_FRACTION) / (grid.positions - 1)
    cx, cy = dd.CENTRE_FRACTION * grid.size + px * step, dd.CENTRE_FRACTION * grid.size + py * step
    pixel = np.arange(grid.size) + 0.5
    x = ((pixel - cx) / r)[None, :]
    y = ((cy - pixel) / r)[:, None]
    u = math.cos(theta) * x + math.sin(theta) * y
    v = math.cos(theta) * y - math.sin(theta) * x
    if shape == 0:
        return (np.abs(u) <= 1 / math.sqrt(2)) & (np.abs(v) <= 1 / math.sqrt(2))
    if shape == 1:
        w = v / dd.ELLIPSE_MINOR
        return u * u + w * w <= 1
    a, b = u * dd.HEART_RADIUS, v * dd.HEART_RADIUS + dd.HEART_CENTROID_Y
    t = a * a + b * b - 1
    return t * t * t <= a * a * (b * b * b)


def test_render_matches_a_whole_canvas_reference():
    picks = torch.randperm(FULL_GRID.N, generator=torch.Generator().manual_seed(0))[:300]
    for grid, index in ((FULL_GRID, picks), (TINY_GRID, torch.arange(TINY_GRID.N))):
        images = grid.render(index)
        assert images.dtype == torch.bool and images.shape == (len(index), grid.size, grid.size)
        for image, f in zip(images.numpy(), grid.factors(index).tolist()):
            assert np.array_equal(image, _reference(grid, f)), f


def test_memoised_patches_are_the_computed_ones(monkeypatch):
    index = torch.randperm(FULL_GRID.N, generator=torch.Generator().manual_seed(1))[:2000]
    memo = FULL_GRID.render(index)
    monkeypatch.setattr(dd, "_GEOMETRY", {})
    monkeypatch.setattr(dd, "PATCH_CACHE_BYTES", 0)
    direct = FULL_GRID.render(index)
    assert dd._GEOMETRY[FULL_GRID]["table"] is None and torch.equal(direct, memo)
    assert torch.equal(FULL_GRID.render(index[:7]), memo[:7]) and FULL_GRID.render([]).shape == (0, 64, 64)


def test_symmetric_images_are_bit_identical():
    g = FULL_GRID
    for shape, turn in ((0, 10), (1, 20)):  # square: a quarter turn = 10 steps; ellipse: a half turn = 20
        rows = [[shape, sc, k, px, py] for sc, k, px, py in itertools.product((0, 5), range(40), (0, 17), (3, 31))]
        shifted = [[shape, sc, (k + turn) % 40, px, py] for shape, sc, k, px, py in rows]
        assert np.array_equal(_images(g, rows), _images(g, shifted))
        half = [[shape, sc, (k + turn // 2) % 40, px, py] for shape, sc, k, px, py in rows]
        assert all(not np.array_equal(a, b) for a, b in zip(_images(g, rows), _images(g, half)))
    heart = [[2, 5, k, 10, 10] for k in range(40)]
    images = _images(g, heart).reshape(40, -1)
    assert len(np.unique(images, axis=0)) == 40  # no symmetry


def _distinct_counts(grid: Grid) -> tuple[int, int, int]:
    """Distinct images (by two 64-bit hashes of the bit-packed pixels), distinct (shape, scale, reduced orientation,
    position) keys, and distinct (hash, key) pairs: all equal iff identical images are exactly the equal keys."""
    mult = np.random.default_rng(0).integers(1, 2 ** 63, size=(2, 8 * ((grid.size ** 2 + 63) // 64)),
                                             dtype=np.uint64) | np.uint64(1)
    hashes = np.empty((grid.N, 2), dtype=np.uint64)
    for lo in range(0, grid.N, 32768):
        images = grid.render(torch.arange(lo, min(lo + 32768, grid.N))).numpy().reshape(-1, grid.size ** 2)
        packed = np.packbits(images, axis=1)
        packed = np.pad(packed, ((0, 0), (0, (-packed.shape[1]) % 8))).view(np.uint64)
        hashes[lo:lo + len(images)] = (packed[:, None, :] * mult[None, :, :packed.shape[1]]).sum(-1)
    f = grid.factors(torch.arange(grid.N))
    key = grid.index_of(torch.stack([f[:, 0], f[:, 1], grid.reduced_orientation(f[:, 0], f[:, 2]), f[:, 3], f[:, 4]],
                                    1)).numpy().astype(np.uint64)
    both = np.concatenate([hashes, key[:, None]], 1)
    return len(np.unique(hashes, axis=0)), len(np.unique(key)), len(np.unique(both, axis=0))


def test_full_grid_images_are_distinct_up_to_the_symmetries():
    # 6 scales x 1024 positions x (10 square + 20 ellipse + 40 heart orientations)
    assert _distinct_counts(FULL_GRID) == (430_080,) * 3


def test_tiny_grid_images_are_distinct_up_to_the_symmetries():
    sc, pos = TINY_GRID.scales, TINY_GRID.positions ** 2
    assert _distinct_counts(TINY_GRID) == ((2 + 4 + 8) * sc * pos,) * 3  # 8 orientations: square 2, ellipse 4


def _perimeter_heart(r: float) -> float:
    """Perimeter of the heart scaled to bounding radius r: boundary points along 20,000 rays from the centroid."""
    angles = np.linspace(0, 2 * np.pi, 20_001)
    lo, hi = np.zeros_like(angles), np.full_like(angles, 1.0)
    for _ in range(60):  # bisection on the radius (the heart is star-shaped about its centroid)
        mid = (lo + hi) / 2
        x = mid * np.cos(angles) * dd.HEART_RADIUS
        y = mid * np.sin(angles) * dd.HEART_RADIUS + dd.HEART_CENTROID_Y
        inside = (x * x + y * y - 1) ** 3 <= x * x * y ** 3
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    pts = r * lo[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def test_area_grows_like_scale_squared():
    g = FULL_GRID
    s = np.linspace(0.5, 1.0, 6)
    r = s * g.bound_radius
    area = {0: 2 * r ** 2, 1: math.pi * r ** 2 * dd.ELLIPSE_MINOR, 2: HEART_AREA * (r / dd.HEART_RADIUS) ** 2}
    a, b = r, r * dd.ELLIPSE_MINOR
    h = ((a - b) / (a + b)) ** 2
    perimeter = {0: 4 * math.sqrt(2) * r, 1: math.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h))),
                 2: np.array([_perimeter_heart(x) for x in r])}
    for shape in range(3):
        rows = [[shape, sc, k, px, py] for sc in range(6) for k in range(40) for px, py in ((0, 0), (13, 29))]
        counts = _images(g, rows).reshape(6, 80, -1).sum(-1)
        # a pixel count misses the area by at most the pixels the outline crosses: <= sqrt(2) L + 4
        bound = math.sqrt(2) * perimeter[shape] + 4
        assert (np.abs(counts - area[shape][:, None]) <= bound[:, None]).all(), shape
        # least-squares exponent of the mean count against the scale: 2, within what those errors allow
        x = np.log(s) - np.log(s).mean()
        slope = float((x * np.log(counts.mean(1))).sum() / (x * x).sum())
        rel = np.log1p(bound / area[shape])
        assert abs(slope - 2) <= float((np.abs(x) * rel).sum() / (x * x).sum()), (shape, slope)


def _moments(images: np.ndarray):
    """Pixel centroid (x right, y up) and the central second moments of each image."""
    size = images.shape[-1]
    y, x = np.mgrid[0:size, 0:size] + 0.5
    y = -y
    m = images.sum((-1, -2))
    cx, cy = (images * x).sum((-1, -2)) / m, (images * y).sum((-1, -2)) / m
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    second = [(images * p).sum((-1, -2)) / m for p in (dx * dx, dy * dy, dx * dy)]
    return cx, cy, second


def _angle_diff(a, b, period):
    return (a - b + period / 2) % period - period / 2


def test_orientation_turns_the_moments():
    g = FULL_GRID
    theta = 2 * np.pi * np.arange(40) / 40
    half_step = np.pi / 40  # half the angle between neighbouring orientations
    for scale in range(6):
        # the ellipse's principal axis (largest second moment) is at theta mod pi
        _, _, (m20, m02, m11) = _moments(_images(g, [[1, scale, k, 9, 22] for k in range(40)]).astype(float))
        axis = 0.5 * np.arctan2(2 * m11, m20 - m02)
        assert np.abs(_angle_diff(axis, theta, np.pi)).max() < half_step, scale


def _quarter_turn(image: np.ndarray, ic: int, jc: int) -> np.ndarray:
    """``image`` turned a quarter counter-clockwise (as displayed) about the centre of pixel (ic, jc)."""
    i, j = np.nonzero(image)
    out = np.zeros_like(image)
    out[ic - (j - jc), jc + (i - ic)] = True
    return out


def test_ten_orientation_steps_are_a_quarter_turn():
    # on the full grid the centres are pixel centres, so a quarter turn maps the pixel grid onto itself: the image
    # at orientation k + 10 is the image at k turned counter-clockwise, pixel for pixel (the heart has no symmetry,
    # so this fixes its sense of rotation; the ellipse's turns by a half-turn period in its moments above)
    g = FULL_GRID
    px, py = 9, 22
    ic, jc = int(g.centres([0]).numpy()[0, 1] - 0.5) + py, int(g.centres([0]).numpy()[0, 0] - 0.5) + px
    for shape, scale in itertools.product(range(3), range(6)):
        images = _images(g, [[shape, scale, k, px, py] for k in range(40)])
        for k in range(40):
            assert np.array_equal(_quarter_turn(images[k], ic, jc), images[(k + 10) % 40]), (shape, scale, k)


def test_positions_move_the_centroid_linearly():
    g = FULL_GRID
    p = np.arange(32)
    for shape in range(3):
        cx, _, _ = _moments(_images(g, [[shape, 3, 7, i, 5] for i in p]).astype(float))
        _, cy, _ = _moments(_images(g, [[shape, 3, 7, 5, i] for i in p]).astype(float))
        # one pixel per position on the full grid (x right; y down, so the up-coordinate falls)
        assert np.allclose(cx - cx[0], p * g.position_step, rtol=0, atol=1e-9)
        assert np.allclose(cy[0] - cy, p * g.position_step, rtol=0, atol=1e-9)
        centre = g.centres(g.index_of(torch.tensor([[shape, 3, 7, 5, 5]]))).numpy()[0]
        # square and ellipse are point-symmetric about their centre: the centroid is it; the heart's within a pixel
        tol = 1e-9 if shape < 2 else 0.5
        assert abs(cx[5] - centre[0]) <= tol and abs(-cy[5] - centre[1]) <= tol
    tiny = TINY_GRID
    cx, _, _ = _moments(_images(tiny, [[1, 1, 0, i, 0] for i in range(4)]).astype(float))
    assert tiny.position_step >= 1 and np.all(np.diff(cx) >= 1)


def test_shapes_stay_inside_the_canvas():
    for grid in (FULL_GRID, TINY_GRID):
        corners = [[sh, grid.scales - 1, k, px, py] for sh in range(3) for k in range(grid.orientations)
                   for px, py in itertools.product((0, grid.positions - 1), repeat=2)]
        images = _images(grid, corners)
        assert images.any((1, 2)).all()
        assert not images[:, 0].any() and not images[:, -1].any()
        assert not images[:, :, 0].any() and not images[:, :, -1].any()


def test_validation():
    for kwargs, match in (({"shapes": 4}, "Grid.shapes"), ({"scales": 0}, "Grid.scales"),
                          ({"positions": 40}, "Grid.positions"), ({"size": 4}, "Grid.size"),
                          ({"orientations": 2.0}, "Grid.orientations")):
        with pytest.raises(ValueError, match=match):
            Grid(**kwargs)
    with pytest.raises(ValueError, match=r"index must lie in \[0, 737280\)"):
        FULL_GRID.render([737_280])
    with pytest.raises(ValueError, match="index must hold integers"):
        FULL_GRID.render(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="factors must"):
        FULL_GRID.index_of([[3, 0, 0, 0, 0]])
    assert Grid(shapes=1, scales=1, orientations=1, positions=1, size=16).render([0]).any()


def test_sample_grid_png(tmp_path):
    path = tmp_path / "samples.png"
    assert dd.sample_grid_png(path, TINY_GRID, columns=4)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not dd.sample_grid_png(path, TINY_GRID, columns=4) and path.read_bytes() == data  # byte-stable
