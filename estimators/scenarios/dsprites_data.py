r"""A procedural dSprites: the full factor grid of the original data set, rendered by the package.

dSprites (Matthey et al. 2017) holds every combination of five factors: shape (square, ellipse,
heart), scale (6 values in [0.5, 1]), orientation (40 values in [0, 2 pi)) and position (32 x 32),
737,280 binary 64 x 64 images. This module renders the same grid deterministically, on the fly,
in batches (nothing is downloaded or stored): :meth:`Grid.render` maps image indices, in the
original's order (shape slowest, ``pos_y`` fastest), to boolean images.

Geometry (pixel units, pixel ``(row i, column j)`` has its centre at ``(x, y) = (j + 1/2, i + 1/2)``):

* A shape at scale ``s`` fits in a disc of radius ``r = s * R`` about its centre, ``R = 15.5 / 64 *
  size`` (its *bounding radius* at scale 1, over every rotation). The square has half-side
  ``r / sqrt 2``, the ellipse semi-axes ``r`` and ``r / 2`` (major axis along x at orientation 0), the
  heart is the implicit curve ``(x^2 + y^2 - 1)^3 <= x^2 y^3`` (Taubin's heart: lobes up, point down),
  moved so that its centroid is the centre and scaled so that its bounding radius is ``r``.
* Orientation ``theta = 2 pi k / orientations`` turns the shape counter-clockwise (as displayed, rows
  down) about its centre. It is reduced modulo the shape's symmetry *before* rendering (the square's
  index modulo a quarter turn, the ellipse's modulo a half turn), so symmetric images are
  bit-identical by construction, as in the original; the heart has no rotational symmetry.
* Position ``(pos_x, pos_y)`` puts the centre at ``c0 + p * step`` pixels (x to the right, y down)
  with ``c0 = 16.5 / 64 * size`` and ``step = (size - 2 c0) / (positions - 1)``: one pixel on the full
  grid, so moving a shape by one position shifts its image by exactly one pixel, and every shape stays
  at least one pixel inside the canvas.
* A pixel is on when its centre lies inside the shape. Everything is computed in float64 by
  elementwise operations (no reductions), so the images do not depend on the thread count.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..figures import pyplot, save_png

__all__ = ["Grid", "FULL_GRID", "TINY_GRID", "FACTOR_NAMES", "SHAPE_NAMES", "RENDER_VERSION", "sample_grid_png"]

RENDER_VERSION = 1  # bump when the rendered pixels change (it enters the VAE recipes' fingerprints)
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SHAPE_NAMES = ("square", "ellipse", "heart")
SYMMETRY = (4, 2, 1)  # rotational symmetry order of each shape: square, ellipse, heart

BOUND_FRACTION = 15.5 / 64  # bounding radius at scale 1, as a fraction of the canvas side
CENTRE_FRACTION = 16.5 / 64  # first (and, mirrored, last) centre position, as a fraction of the side
ELLIPSE_MINOR = 0.5  # minor / major semi-axis
# Taubin's heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0: area 3.662, centroid (0, 0.29348), largest distance of a
# point of it from the centroid 1.29323 (measured on a 4001^2 grid; rounded up so that r bounds the shape)
HEART_CENTROID_Y = 0.29348
HEART_RADIUS = 1.2935
RENDER_CHUNK = 1024  # patches per vectorised chunk when they are not memoised (bounds the float64 temporaries)


@dataclass(frozen=True)
class Grid:
    r"""A dSprites factor grid: every combination of shape, scale, orientation, pos_x and pos_y.

    Args:
        shapes: how many of (square, ellipse, heart), in that order (1 to 3).
        scales: number of scales, evenly spaced in [0.5, 1] (1: scale 1 only).
        orientations: number of orientations ``2 pi k / orientations``, k = 0, ..., orientations - 1.
        positions: positions per axis, evenly spaced in [0, 1] (and in pixels, at least one apart).
        size: the images' side in pixels.

    Example::

        >>> FULL_GRID.N, FULL_GRID.factor_sizes
        (737280, (3, 6, 40, 32, 32))
        >>> FULL_GRID.render(torch.tensor([0, 737279])).shape
        torch.Size([2, 64, 64])
    """

    shapes: int = 3
    scales: int = 6
    orientations: int = 40
    positions: int = 32
    size: int = 64

    def __post_init__(self) -> None:
        for name in ("shapes", "scales", "orientations", "positions", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Grid.{name} must be a positive int, got {value!r}")
        if self.shapes > len(SHAPE_NAMES):
            raise ValueError(f"Grid.shapes must be at most {len(SHAPE_NAMES)} ({', '.join(SHAPE_NAMES)}), "
                             f"got {self.shapes}")
        if self.size < 8:
            raise ValueError(f"Grid.size must be at least 8 pixels, got {self.size}")
        if self.positions > 1 and self.position_step < 1.0:
            most = int(self.size * (1 - 2 * CENTRE_FRACTION)) + 1
            raise ValueError(f"Grid.positions must be at most {most} at size {self.size} (consecutive positions "
                             f"at least one pixel apart), got {self.positions}")

    @property
    def factor_sizes(self) -> tuple[int, int, int, int, int]:
        """Number of values of each factor, in :data:`FACTOR_NAMES` order."""
        return (self.shapes, self.scales, self.orientations, self.positions, self.positions)

    @property
    def N(self) -> int:
        """Number of images: the product of the factor sizes."""
        return math.prod(self.factor_sizes)

    @property
    def position_step(self) -> float:
        """Pixels between consecutive positions (0 with a single position)."""
        return 0.0 if self.positions == 1 else self.size * (1 - 2 * CENTRE_FRACTION) / (self.positions - 1)

    @property
    def bound_radius(self) -> float:
        """Radius in pixels of the disc about its centre that holds a shape at scale 1, in every orientation."""
        return BOUND_FRACTION * self.size

    def as_dict(self) -> dict:
        return asdict(self)

    def _index(self, index) -> Tensor:
        idx = torch.as_tensor(np.asarray(index) if not isinstance(index, Tensor) else index)
        if idx.numel() == 0:  # an empty list reads as float64
            idx = idx.to(torch.int64)
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
            raise ValueError(f"index must hold integers, got dtype {idx.dtype}")
        idx = idx.reshape(-1).to(torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.N):
            raise ValueError(f"index must lie in [0, {self.N}) (the grid's N), got values in "
                             f"[{int(idx.min())}, {int(idx.max())}]")
        return idx

    def factors(self, index) -> Tensor:
        r"""The factor indices of images ``index`` (any integer array), (n, 5) int64 in :data:`FACTOR_NAMES` order.

        The image index is mixed-radix in the factor sizes, shape slowest and ``pos_y`` fastest (the original's order).
        """
        rest = self._index(index)
        out = torch.empty(rest.shape[0], 5, dtype=torch.int64)
        for column, size in reversed(list(enumerate(self.factor_sizes))):
            out[:, column] = rest % size
            rest = rest // size
        return out

    def index_of(self, factors) -> Tensor:
        r"""The image index of each row of factor indices ``factors`` (n, 5): the inverse of :meth:`factors`."""
        f = torch.as_tensor(np.asarray(factors) if not isinstance(factors, Tensor) else factors).to(torch.int64)
        if f.ndim != 2 or f.shape[1] != 5:
            raise ValueError(f"factors must have shape (n, 5), got {tuple(f.shape)}")
        sizes = torch.tensor(self.factor_sizes)
        if bool(((f < 0) | (f >= sizes)).any()):
            raise ValueError(f"factors must lie in [0, size) per column, sizes {self.factor_sizes}")
        out = torch.zeros(f.shape[0], dtype=torch.int64)
        for column, size in enumerate(self.factor_sizes):
            out = out * size + f[:, column]
        return out

    def factor_values(self, index) -> Tensor:
        r"""The factor values of images ``index``, (n, 5) float64: shape index (0 square, 1 ellipse, 2 heart),
        scale in [0.5, 1], orientation ``2 pi k / orientations`` in [0, 2 pi) (unreduced), pos_x and pos_y in [0, 1]."""
        f = self.factors(index)
        out = torch.empty(f.shape, dtype=torch.float64)
        out[:, 0] = f[:, 0].double()
        out[:, 1] = self._scales()[f[:, 1]]
        out[:, 2] = 2 * math.pi * f[:, 2].double() / self.orientations
        positions = torch.linspace(0, 1, self.positions, dtype=torch.float64) if self.positions > 1 else \
            torch.zeros(1, dtype=torch.float64)
        out[:, 3] = positions[f[:, 3]]
        out[:, 4] = positions[f[:, 4]]
        return out

    def _scales(self) -> Tensor:
        return torch.linspace(0.5, 1.0, self.scales, dtype=torch.float64) if self.scales > 1 else \
            torch.ones(1, dtype=torch.float64)

    def reduced_orientation(self, shape: Tensor, orientation: Tensor) -> Tensor:
        r"""Orientation indices reduced modulo each shape's symmetry (square: a quarter turn, ellipse: a half turn):
        ``k mod (orientations / gcd(orientations, symmetry))``, so equal reduced indices mean equal images."""
        period = torch.tensor([self.orientations // math.gcd(self.orientations, s) for s in SYMMETRY])
        return orientation % period[shape]

    def centres(self, index) -> Tensor:
        r"""The shapes' centres in pixel coordinates ``(x, y)`` (x right, y down; pixel (i, j) spans
        [j, j + 1] x [i, i + 1]), (n, 2) float64."""
        f = self.factors(index)
        return self._centre(f[:, 3:5])

    def _centre(self, p: Tensor) -> Tensor:
        if self.positions == 1:
            return torch.full(p.shape, self.size / 2, dtype=torch.float64)
        return CENTRE_FRACTION * self.size + p.double() * self.position_step

    def render(self, index) -> Tensor:
        r"""The images ``index`` (any integer array of image indices), a bool tensor (n, size, size).

        Deterministic and vectorised. Only a W x W patch about the centre can be on (W = floor(2 R) + 2 covers
        the disc that holds the shape); the patch depends on the shape, scale, reduced orientation and the centre's
        offset from the patch corner, and is computed by float64 elementwise arithmetic on its pixel centres. Patches
        are memoised per grid (when the table fits in :data:`PATCH_CACHE_BYTES`), so rendering on the fly costs
        little more than pasting them; a memoised patch is the computed one, bit for bit.
        """
        f = self.factors(index)
        n, size = f.shape[0], self.size
        geometry = _geometry(self)
        key = self._patch_key(f, geometry)
        if geometry["table"] is not None:
            table, filled = geometry["table"], geometry["filled"]
            missing = torch.unique(key[~filled[key]])
            if missing.numel():
                table[missing] = self._patches(self._key_factors(missing, geometry), geometry)
                filled[missing] = True
            patch = table[key]
        else:
            patch = torch.empty(n, geometry["W"], geometry["W"], dtype=torch.bool)
            for lo in range(0, n, RENDER_CHUNK):
                patch[lo:lo + RENDER_CHUNK] = self._patches(self._key_factors(key[lo:lo + RENDER_CHUNK], geometry),
                                                            geometry)
        out = torch.zeros(n, size, size, dtype=torch.bool)
        offsets = torch.arange(geometry["W"], dtype=torch.int64)
        cols = geometry["start"][f[:, 3]][:, None] + offsets  # (n, W)
        rows = geometry["start"][f[:, 4]][:, None] + offsets
        out[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = patch
        return out

    def _patch_key(self, f: Tensor, geometry: dict) -> Tensor:
        """Index of each image's patch: (shape, scale, reduced orientation, x offset id, y offset id), mixed radix."""
        k = self.reduced_orientation(f[:, 0], f[:, 2])
        m = geometry["offsets"].numel()
        inverse = geometry["offset_id"]
        return (((f[:, 0] * self.scales + f[:, 1]) * self.orientations + k) * m + inverse[f[:, 3]]) * m \
            + inverse[f[:, 4]]

    def _key_factors(self, key: Tensor, geometry: dict) -> tuple[Tensor, ...]:
        m = geometry["offsets"].numel()
        key, oy = key // m, key % m
        key, ox = key // m, key % m
        key, k = key // self.orientations, key % self.orientations
        return key // self.scales, key % self.scales, k, ox, oy

    def _patches(self, factors: tuple[Tensor, ...], geometry: dict) -> Tensor:
        r"""The W x W patches of (shape, scale index, reduced orientation index, x offset id, y offset id)."""
        shape, scale, k, ox, oy = factors
        W, R = geometry["W"], self.bound_radius
        angles = [2 * math.pi * i / self.orientations for i in range(self.orientations)]
        cos = torch.tensor([math.cos(a) for a in angles], dtype=torch.float64)[k]
        sin = torch.tensor([math.sin(a) for a in angles], dtype=torch.float64)[k]
        r = self._scales()[scale] * R
        pixel = torch.arange(W, dtype=torch.float64) + 0.5
        offsets = geometry["offsets"]
        # pixel centres relative to the shape's centre in units of r, y pointing up (counter-clockwise as displayed)
        dx = (pixel[None, :] - offsets[ox][:, None]) / r[:, None]  # (m, W), by column
        dy = (offsets[oy][:, None] - pixel[None, :]) / r[:, None]  # (m, W), by row
        patch = torch.empty(shape.shape[0], W, W, dtype=torch.bool)
        for which in range(self.shapes):
            sel = (shape == which).nonzero().reshape(-1)
            if sel.numel():
                c, s = cos[sel, None, None], sin[sel, None, None]
                x, y = dx[sel][:, None, :], dy[sel][:, :, None]
                # rotate by -theta: the shape's own coordinates (u along its major axis)
                u = c * x + s * y
                v = c * y - s * x
                patch[sel] = _INSIDE[which](u, v)
        return patch


PATCH_CACHE_BYTES = 64 * 2 ** 20  # largest memoised patch table per grid (the full grid's takes 0.8 MB)
_GEOMETRY: dict = {}


def _geometry(grid: Grid) -> dict:
    r"""Per grid: the patch side W, each position's first patch pixel ``start`` and the centre's offset from it
    (the distinct offsets and each position's id among them), and the memo table of patches."""
    if grid not in _GEOMETRY:
        size, R = grid.size, grid.bound_radius
        W = min(size, int(math.floor(2 * R)) + 2)
        centre = grid._centre(torch.arange(grid.positions))
        start = (centre - R).floor().to(torch.int64).clamp(0, size - W)
        offset = centre - start.double()  # exact: an integer subtracted from a float above it
        offsets, offset_id = torch.unique(offset, return_inverse=True)
        keys = grid.shapes * grid.scales * grid.orientations * offsets.numel() ** 2
        cached = keys * W * W <= PATCH_CACHE_BYTES
        _GEOMETRY[grid] = {"W": W, "start": start, "offsets": offsets, "offset_id": offset_id,
                           "table": torch.zeros(keys, W, W, dtype=torch.bool) if cached else None,
                           "filled": torch.zeros(keys, dtype=torch.bool) if cached else None}
    return _GEOMETRY[grid]


def _square(u: Tensor, v: Tensor) -> Tensor:
    half = 1 / math.sqrt(2)
    return (u.abs() <= half) & (v.abs() <= half)


def _ellipse(u: Tensor, v: Tensor) -> Tensor:
    w = v / ELLIPSE_MINOR
    return u * u + w * w <= 1.0


def _heart(u: Tensor, v: Tensor) -> Tensor:
    x = u * HEART_RADIUS
    y = v * HEART_RADIUS + HEART_CENTROID_Y
    x2 = x * x
    t = x2 + y * y - 1
    return t * t * t <= x2 * (y * y * y)


_INSIDE = (_square, _ellipse, _heart)

FULL_GRID = Grid()
TINY_GRID = Grid(shapes=3, scales=2, orientations=8, positions=4, size=32)  # 768 images, for CI


def sample_grid_png(path, grid: Grid = FULL_GRID, *, columns: int = 12, seed: int = 0) -> bool:
    r"""Write a figure of sample images to ``path`` (PNG, byte-stable): one row per shape, ``columns`` images each
    at seeded random scale, orientation and position. Returns whether the file changed."""
    plt = pyplot()
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(grid.shapes, columns, figsize=(columns * 0.9, grid.shapes * 0.95), squeeze=False)
    for row in range(grid.shapes):
        picks = torch.stack([torch.full((columns,), row, dtype=torch.int64)]
                            + [torch.randint(0, n, (columns,), generator=g) for n in grid.factor_sizes[1:]], 1)
        images = grid.render(grid.index_of(picks))
        for col in range(columns):
            ax = axes[row, col]
            ax.imshow(images[col].numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(SHAPE_NAMES[row], fontsize=8)
    fig.suptitle(f"procedural dSprites: {grid.N:,} images {grid.size}x{grid.size} (factors {grid.factor_sizes})",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_png(fig, Path(path), dpi=100)
