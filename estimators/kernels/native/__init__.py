"""The fused C kernel of mixture.c, compiled at first use and loaded with ctypes.

Why: the streamed logsumexp is exp-bound, and eager torch makes 5-6 passes over every block
(matmul, max, subtract, clamp, exp, sum). A fused C loop was measured at 1.5-2x the roofline
against 5-25x for eager torch. The kernel is plain C (no torch headers), so it compiles in about
a second with the system gcc; the shared objects are cached under the user's cache directory,
keyed by the source, the flags and the CPU.

If no compiler is found, compilation fails, or ``VAE_ESTIMATORS_NATIVE=0`` is set, :func:`get`
returns None and the kernels fall back to the pure-torch path (identical results to float
precision; both are tested against brute force).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from ...files import atomic_path, cache_dir
from ...numerics import LOG_2PI, exp_clamp

__all__ = ["get", "unavailable_reason", "joint_lse", "marginal_lse", "pruned_joint_lse", "kd_order", "vector_width",
           "pack_panels", "group_boxes"]

_SOURCE = Path(__file__).with_name("mixture.c")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-pthread", "-fPIC"]
# Linked in a second step without -ffast-math: linking with it adds crtfastmath.o, whose constructor sets
# flush-to-zero and denormals-are-zero for the whole process when the library loads, silently changing
# every float computation of the user's program (numpy's and torch's subnormals become 0).
_LINK = ["-shared", "-pthread"]
_VARIANTS = {torch.float32: ("float", "_f32"), torch.float64: ("double", "_f64")}
BIAS_FLOOR = -1e30  # -inf log weights are floored here (as BIAS_FLOOR in mixture.c): far below the clamp
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL] | None = None
_failed: str | None = None


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _defines(dtype: torch.dtype) -> list[str]:
    real, suffix = _VARIANTS[dtype]
    return [f"-DREAL={real}", f"-DSUFFIX={suffix}", f"-DEXP_CLAMP={int(exp_clamp(dtype))}"]


def _compile(compiler: str, dtype: torch.dtype, key: str) -> Path:
    suffix = _VARIANTS[dtype][1]
    target = cache_dir() / "native" / f"mixture{suffix}-{key}.so"
    if not target.exists():
        with atomic_path(target) as tmp:  # concurrent processes never load a half-written file
            obj = tmp.with_name(tmp.name + ".o")
            try:
                for cmd in ([compiler, *_FLAGS, *_defines(dtype), "-c", "-o", str(obj), str(_SOURCE)],
                            [compiler, *_LINK, "-o", str(tmp), str(obj), "-lm"]):
                    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            finally:
                obj.unlink(missing_ok=True)
    return target


def _load() -> dict[torch.dtype, ctypes.CDLL]:
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    defines = " ".join(d for dtype in _VARIANTS for d in _defines(dtype))
    key = hashlib.sha256(
        _SOURCE.read_bytes() + " ".join(_FLAGS + _LINK).encode() + defines.encode() + compiler.encode() + _cpu_id().encode()
    ).hexdigest()[:16]
    libs = {}
    for dtype, (_, suffix) in _VARIANTS.items():
        lib = ctypes.CDLL(str(_compile(compiler, dtype, key)))
        real_p = ctypes.c_void_p
        joint = getattr(lib, "joint_lse" + suffix)
        joint.argtypes = [real_p, ctypes.c_long, real_p, real_p, real_p, real_p, ctypes.c_long, ctypes.c_long,
                          real_p, ctypes.c_int]
        marginal = getattr(lib, "marginal_lse" + suffix)
        marginal.argtypes = joint.argtypes
        joint.restype = marginal.restype = None
        pruned = getattr(lib, "pruned_joint_lse" + suffix)
        pruned.argtypes = ([real_p, ctypes.c_long, ctypes.c_long, real_p, real_p, real_p]  # z, Q, D, panels
                           + [ctypes.c_long, real_p, real_p, ctypes.c_long]  # levels: count, counts, pointers, fanout
                           + [real_p, ctypes.c_long]  # dims, sharp first; how many are sharp
                           + [ctypes.c_double, real_p, real_p, ctypes.c_int])
        width = getattr(lib, "vector_width" + suffix)
        width.argtypes, width.restype = [], ctypes.c_long
        pruned.restype = ctypes.c_int
        kd = getattr(lib, "kd_order" + suffix)
        kd.argtypes = [real_p, ctypes.c_long, ctypes.c_long, real_p, ctypes.c_long, real_p, real_p, ctypes.c_int]
        kd.restype = ctypes.c_long
        pack = getattr(lib, "pack_panels" + suffix)
        pack.argtypes = [real_p] * 5 + [ctypes.c_long, ctypes.c_long] + [real_p] * 3 + [ctypes.c_int]
        boxes = getattr(lib, "group_boxes" + suffix)
        boxes.argtypes = [real_p] * 5 + [ctypes.c_long, ctypes.c_long] + [real_p] * 5 + [ctypes.c_int]
        pack.restype = boxes.restype = None
        libs[dtype] = lib
    return libs


def get() -> dict[torch.dtype, ctypes.CDLL] | None:
    """The compiled kernels per dtype, or None when the native path is unavailable or disabled."""
    global _libs, _failed
    if os.environ.get("VAE_ESTIMATORS_NATIVE", "1") == "0":
        return None
    if _libs is None and _failed is None:
        with _lock:
            if _libs is None and _failed is None:
                try:
                    _libs = _load()
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    _failed = f"{type(exc).__name__}: {getattr(exc, 'stderr', None) or exc}"
    return _libs


def unavailable_reason() -> str | None:
    """Why :func:`get` returned None (for diagnostics and tests)."""
    if os.environ.get("VAE_ESTIMATORS_NATIVE", "1") == "0":
        return "disabled by VAE_ESTIMATORS_NATIVE=0"
    get()
    return _failed


def _available(z: torch.Tensor) -> dict[torch.dtype, ctypes.CDLL] | None:
    libs = get()
    if libs is None or z.device.type != "cpu" or z.dtype not in libs:
        return None
    return libs


def _floored(c: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-component constants in ``dtype``, contiguous, -inf (zero weights) floored at BIAS_FLOOR.

    The C code assumes finite values (-ffast-math); it floors the (Q, N) bias itself.
    """
    return c.detach().to(dtype).clamp(min=BIAS_FLOOR).contiguous()


def _bias(bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if bias is None else bias.detach().to(dtype).contiguous()


def _components(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(D, N) layouts of mu and a = exp(-logvar) / 2, and the (N, D) half log-normaliser."""
    lv = logvar.detach()
    return (mu.detach().T.contiguous(), (0.5 * torch.exp(-lv)).T.contiguous(), -0.5 * (lv + LOG_2PI))


PARALLEL_TERMS = 2**20  # below about a millisecond of work, starting a second thread costs more than it saves


def _threads(terms: int) -> int:
    return torch.get_num_threads() if terms >= PARALLEL_TERMS else 1


def _nan_where_inputs_are(out: torch.Tensor, bad_z: torch.Tensor, mu, logvar, dim) -> torch.Tensor:
    """NaN wherever an input was NaN, as the torch path gives: the C loop is compiled with -ffast-math,
    which assumes finite values, so a NaN would otherwise come out as a finite number. O(QD + ND), no sync."""
    reduce = (lambda t: torch.isnan(t).any()) if dim is None else (lambda t: torch.isnan(t).any(dim))
    bad = bad_z | reduce(mu.detach()) | reduce(logvar.detach())
    return out.masked_fill_(bad, float("nan"))


def _launch(libs, name: str, z, mu_t, a_t, consts, bias, out) -> torch.Tensor:
    """Call the C function ``name`` (joint_lse or marginal_lse: one argument order) and return ``out``."""
    (Q, D), dtype = z.shape, z.dtype
    N = mu_t.shape[0] if name == "joint_lse" else mu_t.shape[1]  # the joint takes (N, D), the marginals (D, N)
    zc = z.detach().contiguous()
    b = _bias(bias, dtype)
    getattr(libs[dtype], name + _VARIANTS[dtype][1])(
        zc.data_ptr(), Q, mu_t.data_ptr(), a_t.data_ptr(), consts.data_ptr(), None if b is None else b.data_ptr(),
        N, D, out.data_ptr(), _threads(Q * N * D))
    return out


def joint_lse(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor | None = None,
              bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """out_i = logsumexp_n (log N(z_i; mu_n, var_n) + log_weights_n + bias_in) by the C kernel, (Q,).

    Inputs: CPU tensors of one dtype (float32 or float64), z (Q, D), mu and logvar (N, D), optional
    log_weights (N,) and bias (Q, N) (-inf allowed in both: zero weights). Detached (forward value
    only). Returns None when the kernel cannot run on these tensors (not built, disabled, not CPU).
    """
    libs = _available(z)
    if libs is None:
        return None
    dtype, Q = z.dtype, z.shape[0]
    lv = logvar.detach()
    m, a = mu.detach().contiguous(), (0.5 * torch.exp(-lv)).contiguous()  # (N, D): the C loop packs them
    c = (-0.5 * (lv + LOG_2PI)).to(torch.float64).sum(1)  # sum over d in float64: D terms of size ~10
    if log_weights is not None:
        c = c + log_weights.detach().to(torch.float64)
    out = _launch(libs, "joint_lse", z, m, a, _floored(c, dtype), bias, torch.empty(Q, dtype=dtype))
    return _nan_where_inputs_are(out, torch.isnan(z).any(1), mu, logvar, None)


def marginal_lse(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """out_id = logsumexp_n (log N(z_id; mu_nd, var_nd) + log_weights_n + bias_in) by the C kernel, (Q, D).

    Same contract as :func:`joint_lse`: the bias (Q, N) is shared by every dimension.
    """
    libs = _available(z)
    if libs is None:
        return None
    dtype = z.dtype
    mu_t, a_t, half_log = _components(mu, logvar)
    cd = half_log.T
    if log_weights is not None:
        cd = cd + log_weights.detach().to(dtype)[None, :]
    out = _launch(libs, "marginal_lse", z, mu_t, a_t, _floored(cd, dtype), bias, torch.empty(z.shape, dtype=dtype))
    return _nan_where_inputs_are(out, torch.isnan(z), mu, logvar, 0)


PRUNE_FIELDS = 9  # arrays per level, in the C kernel's order: start, lo, hi, lvlo, lvhi, iel, ieh, wmax, logn


def vector_width(dtype: torch.dtype) -> int | None:
    """Members per vector of the C kernel's panels for ``dtype`` (4 or 8 on AVX2, twice that on AVX-512), or None."""
    libs = get()
    return None if libs is None else int(getattr(libs[dtype], "vector_width" + _VARIANTS[dtype][1])())


def pruned_joint_lse(z: torch.Tensor, panels: torch.Tensor, consts: torch.Tensor, offsets: torch.Tensor,
                     levels: list[tuple], whole: tuple, dims: torch.Tensor, sharp: int, max_fanout: int,
                     log_cut: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The pruned joint logsumexp of the C kernel (float64, CPU; :mod:`estimators.kernels.pruned` builds the
    arguments): (out (Q,), evaluated terms per query (Q,) int64), or None when the kernel cannot run.

    The groups' components, sorted so that groups are contiguous, each padded to a multiple of
    :func:`vector_width` members (at most 1024): ``panels`` (P / W, 2 D, W) (per run of W members: D rows of
    mu, then D of a = exp(-logvar) / 2), ``consts`` (P,) (log-normaliser plus log weight), ``offsets``
    (G + 1,) int64 (each group's first padded member); ``levels``, coarsest first, each :data:`PRUNE_FIELDS`
    contiguous tensors: start (count + 1,) int64 (children in the next finer level, or components for the
    finest), then lo, hi, lvlo, lvhi, exp(-lvlo), exp(-lvhi) as (D, count) and wmax, logn as (count,), float64;
    ``whole``, the same fields for one unit holding every component; ``dims`` (D,) int64, a permutation of
    the dimensions whose first ``sharp`` the units' bounds use, the others bounded once per query by ``whole``."""
    libs = _available(z)
    if libs is None or z.dtype != torch.float64:
        return None
    Q, D = z.shape
    zc = z.detach().contiguous()
    out = torch.empty(Q, dtype=torch.float64)
    evaluated = torch.empty(Q, dtype=torch.int64)
    counts = torch.tensor([level[0].shape[0] - 1 for level in levels], dtype=torch.int64)
    tables = [t for level in [*levels, whole] for t in level]
    pointers = (ctypes.c_void_p * len(tables))(*[t.data_ptr() for t in tables])
    dims = dims.to(torch.int64).contiguous()
    code = libs[torch.float64].pruned_joint_lse_f64(
        zc.data_ptr(), Q, D, panels.data_ptr(), consts.data_ptr(), offsets.data_ptr(), len(levels),
        counts.data_ptr(), ctypes.cast(pointers, ctypes.c_void_p), max_fanout, dims.data_ptr(), int(sharp),
        float(log_cut), out.data_ptr(), evaluated.data_ptr(), _threads(Q * consts.shape[0] * D // 16))
    if code != 0:
        raise ValueError(f"the pruned kernel takes at most 16 levels of boxes, got {len(levels)}")
    return out, evaluated


def kd_order(points: torch.Tensor, scale: torch.Tensor, leaf: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The k-d ordering of the C kernel: (permutation (n,) int64, leaf starts int64), or None where it cannot run.

    ``points`` (n, D) and ``scale`` (D,) float64 CPU tensors (see :func:`estimators.kernels.pruned.kd_order`)."""
    libs = _available(points)
    if libs is None or points.dtype != torch.float64:
        return None
    pts = points.detach().contiguous()
    n, D = pts.shape
    perm = torch.empty(n, dtype=torch.int64)
    starts = torch.empty(max(1, n), dtype=torch.int64)
    sc = scale.detach().to(torch.float64).contiguous()
    leaves = libs[torch.float64].kd_order_f64(pts.data_ptr(), n, D, sc.data_ptr(), int(leaf), perm.data_ptr(),
                                               starts.data_ptr(), torch.get_num_threads())
    return perm, starts[:leaves].clone()


def _groups(perm: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """perm (N,) and starts (G,) as int64 contiguous, starts closed by N."""
    perm = perm.to(torch.int64).contiguous()
    return perm, torch.cat([starts.to(torch.int64), torch.tensor([perm.shape[0]])]).contiguous()


def pack_panels(mu: torch.Tensor, a: torch.Tensor, c: torch.Tensor, perm: torch.Tensor,
                starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The pruned kernel's panels of groups (the joint's packing, one loop of the C kernel), or None.

    Group g is rows perm[starts[g]:starts[g + 1]] of mu and a = exp(-logvar) / 2 ((N, D) float64 CPU) with
    their constants c (N,) (floored at :data:`BIAS_FLOOR`), each group padded to a multiple of
    :func:`vector_width` members: (panels (P / W, 2 D, W), consts (P,), offsets (G + 1,)), the layout
    :func:`pruned_joint_lse` reads."""
    libs = _available(mu)
    if libs is None or mu.dtype != torch.float64:
        return None
    (N, D), width = mu.shape, vector_width(torch.float64)
    perm, bounds = _groups(perm, starts)
    sizes = torch.diff(bounds)
    offsets = torch.zeros(sizes.shape[0] + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(-(-sizes // width) * width, 0)
    P = int(offsets[-1])
    panels = torch.empty(P // width, 2 * D, width, dtype=torch.float64)
    consts = torch.empty(P, dtype=torch.float64)
    m, av = (t.detach().to(torch.float64).contiguous() for t in (mu, a))
    cf = _floored(c, torch.float64)
    libs[torch.float64].pack_panels_f64(m.data_ptr(), av.data_ptr(), cf.data_ptr(), perm.data_ptr(), bounds.data_ptr(),
                                        sizes.shape[0], D, offsets.data_ptr(), panels.data_ptr(), consts.data_ptr(),
                                        _threads(N * D))
    return panels, consts, offsets


def group_boxes(mu: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor, perm: torch.Tensor,
                starts: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """Per group (rows perm[starts[g]:starts[g + 1]]): (lo, hi, lvlo, lvhi) (G, D) and wmax (G,), or None.

    The C loop of :func:`estimators.kernels.pruned.group_bounds` (float64 CPU), reading the rows in place."""
    libs = _available(mu)
    if libs is None or mu.dtype != torch.float64:
        return None
    D = mu.shape[1]
    perm, bounds = _groups(perm, starts)
    G = bounds.shape[0] - 1
    out = [torch.empty(G, D, dtype=torch.float64) for _ in range(4)] + [torch.empty(G, dtype=torch.float64)]
    m, lv, w = (t.detach().to(torch.float64).contiguous() for t in (mu, logvar, log_w))
    libs[torch.float64].group_boxes_f64(m.data_ptr(), lv.data_ptr(), w.data_ptr(), perm.data_ptr(), bounds.data_ptr(),
                                        G, D, *(t.data_ptr() for t in out), _threads(mu.shape[0] * D))
    return tuple(out)
