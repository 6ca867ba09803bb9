"""Check OpenCV with the BLAS shim against OpenCV with its own OpenBLAS (run by build.sh).

Usage: python check.py SHIM_LIBRARY WORK_DIR

The Python running this must import the cv2 that the bundle takes (build.sh puts its overlay on
PYTHONPATH). The check copies that cv2 and its vendored libraries into WORK_DIR (hard links where
possible), puts SHIM_LIBRARY there in place of OpenCV's OpenBLAS, and runs the same computations
in two child processes: one with the real OpenBLAS, one with the shim. Each child confirms from
/proc/self/maps which library it really loaded. Exits 0 when every result agrees (relative
difference at most 1e-5 for float32, 1e-10 for float64; the same success flag where OpenCV
reports one); otherwise prints each difference and exits 1.

Covered: gemm (real and complex, every transpose flag), matrix products, solve (LU, Cholesky,
QR, SVD, normal equations, singular and non-positive-definite matrices), invert, SVDecomp,
eigen, eigenNonSymmetric, solvePoly, findEssentialMat (LAPACK's dgeev) and the geometry the app
and MediaPipe use (affine and perspective transforms, homography).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
SIZES = (1, 2, 3, 5, 8, 17, 33, 64, 101, 200)


# ---------------------------------------------------------------- the computations (child side)


def _well_conditioned(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    return (rng.standard_normal((n, n)) + n * np.eye(n)).astype(dtype)


def _positive_definite(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    m = rng.standard_normal((n, n))
    return (m @ m.T / n + np.eye(n)).astype(dtype)


def _separated_spectrum(rng: np.random.Generator, m: int, n: int, dtype) -> np.ndarray:
    """A matrix whose singular values are 1, 2, ..., min(m, n): vectors are then well defined."""
    q1, _ = np.linalg.qr(rng.standard_normal((m, m)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = min(m, n)
    s = np.zeros((m, n))
    s[np.arange(k), np.arange(k)] = np.arange(1, k + 1)
    return (q1 @ s @ q2.T).astype(dtype)


def _signed(vectors: np.ndarray, axis: int) -> np.ndarray:
    """Singular and eigenvectors are defined up to sign: make each one's largest entry positive."""
    if vectors.size == 0:
        return vectors
    largest = np.take_along_axis(vectors, np.expand_dims(np.abs(vectors).argmax(axis=axis), axis), axis)
    return vectors * np.where(largest < 0, -1, 1).astype(vectors.dtype)


def compute() -> dict[str, np.ndarray]:
    # Python loads extension modules with RTLD_NOW, which binds all of cv2's BLAS imports at
    # import time; lazily, the loader binds each at its first call, and its log (LD_DEBUG) then
    # tells which functions the computations below really reached.
    sys.setdlopenflags(os.RTLD_LAZY)
    import cv2

    cv2.setRNGSeed(7)
    rng = np.random.default_rng(20261124)
    results: dict[str, np.ndarray] = {}

    def put(key: str, value) -> None:
        results[key] = np.asarray(value)

    for dtype in (np.float32, np.float64):
        t = np.dtype(dtype).name
        for n in SIZES:
            k, m = max(1, n // 2 + 1), n + 3
            a = rng.standard_normal((n, k)).astype(dtype)
            b = rng.standard_normal((k, m)).astype(dtype)
            c = rng.standard_normal((n, m)).astype(dtype)
            put(f"gemm/{t}/{n}", cv2.gemm(a, b, 1.5, c, -0.5))
            put(f"gemm_t1/{t}/{n}", cv2.gemm(np.ascontiguousarray(a.T), b, 0.7, None, 0, flags=cv2.GEMM_1_T))
            put(f"gemm_t2/{t}/{n}", cv2.gemm(a, np.ascontiguousarray(b.T), 1.0, None, 0, flags=cv2.GEMM_2_T))
            put(f"gemm_t3/{t}/{n}", cv2.gemm(a, b, 2.0, np.ascontiguousarray(c.T), 1.0, flags=cv2.GEMM_3_T))
            ac = rng.standard_normal((n, k, 2)).astype(dtype)
            bc = rng.standard_normal((k, m, 2)).astype(dtype)
            cc = rng.standard_normal((n, m, 2)).astype(dtype)
            put(f"gemm_complex/{t}/{n}", cv2.gemm(ac, bc, 1.0, cc, 0.25))
            put(f"gemm_complex_t/{t}/{n}",
                cv2.gemm(np.ascontiguousarray(ac.transpose(1, 0, 2)), bc, 1.0, None, 0, flags=cv2.GEMM_1_T))
            put(f"mulTransposed/{t}/{n}", cv2.mulTransposed(a, True))
            put(f"mulTransposed_aat/{t}/{n}", cv2.mulTransposed(a, False))

            square = _well_conditioned(rng, n, dtype)
            rhs = rng.standard_normal((n, 3)).astype(dtype)
            spd = _positive_definite(rng, n, dtype)
            for name, flag in (("lu", cv2.DECOMP_LU), ("qr", cv2.DECOMP_QR), ("svd", cv2.DECOMP_SVD)):
                ok, x = cv2.solve(square, rhs, flags=flag)
                put(f"solve_{name}/{t}/{n}", x)
                put(f"solve_{name}_ok/{t}/{n}", ok)
                ok, inverse = cv2.invert(square, flags=flag if flag != cv2.DECOMP_QR else cv2.DECOMP_LU)
                put(f"invert_{name}/{t}/{n}", inverse)
                # with SVD, OpenCV returns the inverse condition number, computed in the input's type
                put(f"invert_{name}_ok/{t}/{n}", np.asarray(ok, dtype if flag == cv2.DECOMP_SVD else None))
            ok, x = cv2.solve(spd, rhs, flags=cv2.DECOMP_CHOLESKY)
            put(f"solve_cholesky/{t}/{n}", x)
            put(f"solve_cholesky_ok/{t}/{n}", ok)
            ok, inverse = cv2.invert(spd, flags=cv2.DECOMP_CHOLESKY)
            put(f"invert_cholesky/{t}/{n}", inverse)
            put(f"invert_cholesky_ok/{t}/{n}", ok)
            # least squares: more equations than unknowns (well conditioned, since the normal
            # equations square the condition number)
            tall = np.vstack([_well_conditioned(rng, n, np.float64), rng.standard_normal((7, n))]).astype(dtype)
            tall_rhs = rng.standard_normal((n + 7, 2)).astype(dtype)
            for name, flag in (("qr", cv2.DECOMP_QR), ("svd", cv2.DECOMP_SVD),
                               ("normal", cv2.DECOMP_LU | cv2.DECOMP_NORMAL),
                               ("normal_cholesky", cv2.DECOMP_CHOLESKY | cv2.DECOMP_NORMAL)):
                ok, x = cv2.solve(tall, tall_rhs, flags=flag)
                put(f"lstsq_{name}/{t}/{n}", x)
                put(f"lstsq_{name}_ok/{t}/{n}", ok)
            # failures must fail the same way
            singular = square.copy()
            singular[-1] = 0
            for name, flag in (("lu", cv2.DECOMP_LU), ("cholesky", cv2.DECOMP_CHOLESKY)):
                ok, _ = cv2.solve(singular, rhs, flags=flag)
                put(f"singular_{name}_ok/{t}/{n}", ok)
                put(f"singular_invert_{name}/{t}/{n}", cv2.invert(singular, flags=flag)[0])
            indefinite = spd.copy()
            indefinite[0, 0] = -1
            put(f"indefinite_cholesky_ok/{t}/{n}", cv2.solve(indefinite, rhs, flags=cv2.DECOMP_CHOLESKY)[0])
            # SVD of square, tall and wide matrices
            for shape_name, (rows, cols) in (("square", (n, n)), ("tall", (n + 5, n)), ("wide", (n, n + 5))):
                matrix = _separated_spectrum(rng, rows, cols, dtype)
                w, u, vt = cv2.SVDecomp(matrix)
                put(f"svd_w_{shape_name}/{t}/{n}", w)
                # singular vectors are defined only to about eps * n / gap (here n): in float32
                # beyond 64 x 64 two correct libraries differ by 1e-5, so there the check
                # compares the values and the product U diag(w) Vt (below) only
                if dtype == np.float64 or n <= 64:
                    put(f"svd_u_{shape_name}/{t}/{n}", _signed(u, axis=0))
                    put(f"svd_vt_{shape_name}/{t}/{n}", _signed(vt, axis=1))
                w_full, u_full, vt_full = cv2.SVDecomp(matrix, flags=cv2.SVD_FULL_UV)
                put(f"svd_full_w_{shape_name}/{t}/{n}", w_full)
                put(f"svd_full_usv_{shape_name}/{t}/{n}",
                    u_full[:, : w_full.size] @ np.diag(w_full.ravel()) @ vt_full[: w_full.size])
                put(f"svd_no_uv_{shape_name}/{t}/{n}", cv2.SVDecomp(matrix, flags=cv2.SVD_NO_UV)[0])
            symmetric = _positive_definite(rng, n, dtype)
            ok, values, vectors = cv2.eigen(symmetric)
            put(f"eigen_values/{t}/{n}", values)
            put(f"eigen_ok/{t}/{n}", ok)
            if n <= 64:  # vectors of close eigenvalues are not unique
                put(f"eigen_vectors/{t}/{n}", _signed(vectors, axis=1))
            # from 100 x 100 on, OpenCV's determinant is LAPACK's LU (getrf)
            near_identity = (np.eye(n) + rng.standard_normal((n, n)) / (4 * np.sqrt(n))).astype(dtype)
            put(f"determinant/{t}/{n}", np.asarray(cv2.determinant(near_identity), dtype))
            values, vectors = cv2.eigenNonSymmetric(square)
            put(f"eigen_nonsymmetric_values/{t}/{n}", values)
    for degree in range(1, 7):
        coefficients = rng.standard_normal((degree + 1, 1))
        put(f"solvePoly/{degree}", cv2.solvePoly(coefficients, maxIters=300)[1])

    # geometry: a known transform applied to points, then recovered
    points = rng.uniform(0, 640, (60, 2)).astype(np.float32)
    angle, scale, shift = 0.3, 1.2, np.array([12.0, -7.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (points @ rotation.T + shift).astype(np.float32)
    moved_noisy = moved + rng.normal(0, 0.5, moved.shape).astype(np.float32)
    for name, method in (("lmeds", cv2.LMEDS), ("ransac", cv2.RANSAC)):
        matrix, inliers = cv2.estimateAffinePartial2D(points, moved_noisy, method=method)
        put(f"estimateAffinePartial2D_{name}", matrix)
        put(f"estimateAffinePartial2D_{name}_inliers", inliers)
        matrix, inliers = cv2.estimateAffine2D(points, moved_noisy, method=method)
        put(f"estimateAffine2D_{name}", matrix)
    affine = cv2.getAffineTransform(points[:3], moved[:3])
    put("getAffineTransform", affine)
    put("invertAffineTransform", cv2.invertAffineTransform(affine))
    put("getPerspectiveTransform", cv2.getPerspectiveTransform(points[:4], moved_noisy[:4]))
    homography = np.array([[1.1, 0.05, 20], [-0.03, 0.95, -10], [1e-4, -5e-5, 1]])
    projected = cv2.perspectiveTransform(points[None].astype(np.float64), homography)[0]
    projected_noisy = projected + rng.normal(0, 0.5, projected.shape)
    for name, method in (("all", 0), ("ransac", cv2.RANSAC), ("lmeds", cv2.LMEDS)):
        put(f"findHomography_{name}", cv2.findHomography(points, projected_noisy, method)[0])
    # the five-point essential-matrix solver calls LAPACK's dgeev
    world = np.c_[rng.uniform(-1, 1, (40, 2)), rng.uniform(4, 8, 40)]
    camera = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    turn, _ = cv2.Rodrigues(np.array([0.05, -0.1, 0.02]))
    first = cv2.projectPoints(world, np.zeros(3), np.zeros(3), camera, None)[0]
    second = cv2.projectPoints(world, cv2.Rodrigues(turn)[0], np.array([0.5, 0.0, 0.1]), camera, None)[0]
    essential, _ = cv2.findEssentialMat(first, second, camera, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    put("findEssentialMat", essential[:3] / essential[:3][np.unravel_index(np.abs(essential[:3]).argmax(), (3, 3))])
    results.update(call_lapack_directly(rng))
    return results


# LAPACK routines that cv2 imports but that no Python-facing function tried here reaches with a
# matrix large enough for OpenCV to hand it to LAPACK (potrf and geqrf without a right-hand side;
# dgeev, from a five-point solver that did not call it here), and workspace queries. The library cv2 loaded
# is called for them directly, with the same 32-bit interface, including workspace queries.
DIRECT_CALLS = ("sgetrf_", "dgetrf_", "spotrf_", "dpotrf_", "sgeqrf_", "dgeqrf_", "dgeev_", "sgesdd_", "dgesdd_",
                "sgels_", "dgels_")


def call_lapack_directly(rng: np.random.Generator) -> dict[str, np.ndarray]:
    import ctypes

    library = ctypes.CDLL(_loaded_blas()[0], mode=os.RTLD_LAZY)  # RTLD_NOW would bind all of cv2's imports too
    results: dict[str, np.ndarray] = {}

    def integer(value: int) -> ctypes.c_int:
        return ctypes.c_int(value)

    def fortran(matrix: np.ndarray, padding: int) -> np.ndarray:
        """matrix in column-major order with `padding` unused rows (lda = rows + padding)."""
        padded = np.zeros((matrix.shape[0] + padding, matrix.shape[1]), matrix.dtype, order="F")
        padded[: matrix.shape[0]] = matrix
        return padded

    def pointer(array: np.ndarray):
        return array.ctypes.data_as(ctypes.c_void_p)

    for dtype, prefix in ((np.float32, "s"), (np.float64, "d")):
        for m, n in ((1, 1), (7, 5), (5, 7), (120, 120), (150, 130)):
            key = f"{prefix}/{m}x{n}"
            a = fortran(rng.standard_normal((m, n)).astype(dtype) + np.eye(m, n, dtype=dtype) * n, 3)
            pivots = np.zeros(min(m, n), np.int32)
            info = integer(-99)
            getattr(library, f"{prefix}getrf_")(ctypes.byref(integer(m)), ctypes.byref(integer(n)), pointer(a),
                                                ctypes.byref(integer(m + 3)), pointer(pivots), ctypes.byref(info))
            results[f"getrf_lu/{key}"], results[f"getrf_pivots/{key}"] = a[:m], pivots
            results[f"getrf_info/{key}"] = np.int32(info.value)

            a = fortran(rng.standard_normal((m, n)).astype(dtype), 2)
            tau = np.zeros(min(m, n), dtype)
            query = np.zeros(1, dtype)
            for lwork, work in ((-1, query), (None, None)):
                if lwork is None:
                    lwork = max(1, int(query[0]))
                    work = np.zeros(lwork, dtype)
                getattr(library, f"{prefix}geqrf_")(ctypes.byref(integer(m)), ctypes.byref(integer(n)), pointer(a),
                                                    ctypes.byref(integer(m + 2)), pointer(tau), pointer(work),
                                                    ctypes.byref(integer(lwork)), ctypes.byref(info))
                results[f"geqrf_info_{'query' if work is query else 'run'}/{key}"] = np.int32(info.value)
            results[f"geqrf_query_positive/{key}"] = np.bool_(query[0] >= n)
            results[f"geqrf_r/{key}"], results[f"geqrf_tau/{key}"] = np.triu(a[:m]), tau

            # workspace queries of the routines cv2 also calls: the size must be usable
            iwork = np.zeros(8 * min(m, n), np.int32)
            for jobz in (b"S", b"A"):
                query = np.zeros(1, dtype)
                getattr(library, f"{prefix}gesdd_")(ctypes.c_char_p(jobz), ctypes.byref(integer(m)),
                                                    ctypes.byref(integer(n)), pointer(a), ctypes.byref(integer(m + 2)),
                                                    pointer(tau), pointer(a), ctypes.byref(integer(m + 2)), pointer(a),
                                                    ctypes.byref(integer(max(1, n))), pointer(query),
                                                    ctypes.byref(integer(-1)), pointer(iwork), ctypes.byref(info))
                results[f"gesdd_query_info_{jobz.decode()}/{key}"] = np.int32(info.value)
                results[f"gesdd_query_usable_{jobz.decode()}/{key}"] = np.bool_(query[0] >= 3 * min(m, n))
            query = np.zeros(1, dtype)
            getattr(library, f"{prefix}gels_")(ctypes.c_char_p(b"N"), ctypes.byref(integer(m)), ctypes.byref(integer(n)),
                                               ctypes.byref(integer(2)), pointer(a), ctypes.byref(integer(m + 2)),
                                               pointer(a), ctypes.byref(integer(max(m, n) + 2)), pointer(query),
                                               ctypes.byref(integer(-1)), ctypes.byref(info))
            results[f"gels_query_info/{key}"] = np.int32(info.value)
            results[f"gels_query_usable/{key}"] = np.bool_(query[0] >= min(m, n) + 2)

        for n in (1, 5, 120):
            for uplo in (b"L", b"U"):
                key = f"{prefix}/{n}/{uplo.decode()}"
                m = rng.standard_normal((n, n))
                a = fortran((m @ m.T / n + np.eye(n)).astype(dtype), 1)
                getattr(library, f"{prefix}potrf_")(ctypes.c_char_p(uplo), ctypes.byref(integer(n)), pointer(a),
                                                    ctypes.byref(integer(n + 1)), ctypes.byref(info))
                factor = np.tril(a[:n]) if uplo == b"L" else np.triu(a[:n])
                results[f"potrf/{key}"], results[f"potrf_info/{key}"] = factor, np.int32(info.value)
                a = fortran(-np.eye(n, dtype=dtype), 1)  # not positive definite: info = 1
                getattr(library, f"{prefix}potrf_")(ctypes.c_char_p(uplo), ctypes.byref(integer(n)), pointer(a),
                                                    ctypes.byref(integer(n + 1)), ctypes.byref(info))
                results[f"potrf_indefinite_info/{key}"] = np.int32(info.value)

    # dgeev as OpenCV's five-point solver calls it (no left vectors, ldvl = 1), on matrices with
    # distinct real eigenvalues, whose unit eigenvectors are unique up to sign
    for n in (1, 4, 27, 60):
        basis = np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)  # well conditioned, not orthogonal
        a = fortran(basis @ np.diag(np.arange(1.0, n + 1)) @ np.linalg.inv(basis), 2)
        wr, wi = np.zeros(n), np.zeros(n)
        vr = np.zeros((n + 1, n), order="F")
        query = np.zeros(1)
        for lwork, work in ((-1, query), (None, None)):
            if lwork is None:
                lwork = max(1, int(query[0]))
                work = np.zeros(lwork)
            library.dgeev_(ctypes.c_char_p(b"N"), ctypes.c_char_p(b"V"), ctypes.byref(integer(n)), pointer(a),
                           ctypes.byref(integer(n + 2)), pointer(wr), pointer(wi), None, ctypes.byref(integer(1)),
                           pointer(vr), ctypes.byref(integer(n + 1)), pointer(work), ctypes.byref(integer(lwork)),
                           ctypes.byref(info))
            results[f"dgeev_info_{'query' if work is query else 'run'}/{n}"] = np.int32(info.value)
        results[f"dgeev_query_usable/{n}"] = np.bool_(query[0] >= 4 * n)
        order = np.argsort(wr)
        results[f"dgeev_wr/{n}"], results[f"dgeev_wi/{n}"] = wr[order], wi[order]
        results[f"dgeev_vr/{n}"] = _signed(vr[:n][:, order], axis=0)
    return {f"direct/{key}": value for key, value in results.items()}


def _loaded_blas() -> tuple[str, bool]:
    """The OpenCV OpenBLAS file this process mapped, and whether numpy's OpenBLAS is mapped too."""
    maps = Path("/proc/self/maps").read_text()
    opencv = sorted({line.split()[-1] for line in maps.splitlines() if "libopenblasp-r0" in line})
    numpy_blas = "libscipy_openblas64_" in maps
    return (opencv[0] if len(opencv) == 1 else f"{len(opencv)} copies: {opencv}"), numpy_blas


# ---------------------------------------------------------------- the comparison (parent side)


def difference(real: np.ndarray, shim: np.ndarray) -> str | None:
    """None when the two agree, else what differs."""
    if real.shape != shim.shape or real.dtype != shim.dtype:
        return f"shape/type {real.shape} {real.dtype} against {shim.shape} {shim.dtype}"
    if real.dtype == np.bool_ or np.issubdtype(real.dtype, np.integer):
        return None if np.array_equal(real, shim) else f"{real.ravel()[:6]} against {shim.ravel()[:6]}"
    if not np.array_equal(np.isnan(real), np.isnan(shim)):
        return "NaN in different places"
    real64, shim64 = np.nan_to_num(real.astype(np.float64)), np.nan_to_num(shim.astype(np.float64))
    scale = np.linalg.norm(real64)
    relative = np.linalg.norm(real64 - shim64) / scale if scale > 0 else np.linalg.norm(shim64)
    tolerance = TOLERANCE.get(real.dtype, 1e-10)
    return None if relative <= tolerance else f"relative difference {relative:.3g} > {tolerance:g}"


def _copy_package(source: Path, target: Path) -> None:
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, symlinks=True)


def _opencv_blas() -> Path:
    """OpenCV's OpenBLAS, as cv2's own RPATH/RUNPATH finds it."""
    import cv2

    extension = next(Path(cv2.__file__).parent.glob("cv2*.so"))
    dynamic = subprocess.run(["readelf", "-d", str(extension)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(libopenblas[^\]]*)\]", dynamic)
    search = re.findall(r"\((?:RPATH|RUNPATH)\).*\[([^\]]*)\]", dynamic)
    if not needed:
        sys.exit(f"check: {extension} needs no OpenBLAS")
    for entry in (search[0].split(":") if search else []):
        candidate = Path(entry.replace("$ORIGIN", str(extension.parent))) / needed[0]
        if candidate.is_file():
            return candidate.resolve()
    sys.exit(f"check: cannot find {needed[0]} on {extension}'s search path")


def main(shim_library: Path, work_dir: Path) -> int:
    import cv2
    import numpy

    real_blas = _opencv_blas()
    cv2_dir = Path(cv2.__file__).parent
    site = cv2_dir.parent
    shim_site = work_dir / "shim"
    if shim_site.exists():
        shutil.rmtree(shim_site)
    shim_site.mkdir(parents=True)
    _copy_package(cv2_dir, shim_site / "cv2")
    _copy_package(real_blas.parent, shim_site / real_blas.parent.name)
    if real_blas.parent.parent != site:
        sys.exit(f"check: {real_blas} is not beside {cv2_dir}")
    # a new file, never a write through the hard link into the build environment
    (shim_site / real_blas.parent.name / real_blas.name).unlink()
    shutil.copy(shim_library, shim_site / real_blas.parent.name / real_blas.name)
    # the shim finds numpy's OpenBLAS at $ORIGIN/../numpy.libs, as in a site-packages folder
    (shim_site / "numpy.libs").symlink_to(Path(numpy.__file__).parent.parent / "numpy.libs")

    outputs = {}
    bindings = work_dir / "bindings"
    for old in work_dir.glob("bindings.*"):
        old.unlink()
    for label, extra_path in (("real", None), ("shim", shim_site)):
        environment = dict(os.environ)
        if extra_path is not None:
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), environment.get("PYTHONPATH")]))
            # cv2 is loaded lazily (compute()): the loader's log shows which functions were called
            environment.update(LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(bindings))
        outputs[label] = work_dir / f"{label}.npz"
        child = subprocess.run([sys.executable, __file__, "--compute", str(outputs[label])],
                               env=environment, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(f"check: cv2 with the {label} OpenBLAS failed (exit {child.returncode}):\n"
                  f"{child.stdout}{child.stderr[-3000:]}")
            return 1
        print(f"check: {label}: {child.stdout.strip()}")
        loaded = child.stdout.strip().split("loaded ", 1)[-1]
        if label == "shim" and not loaded.startswith(str(shim_site)):
            print(f"check: the shim run loaded {loaded}, not the shim")
            return 1
        if label == "real" and loaded.startswith(str(shim_site)):
            print("check: the real run loaded the shim")
            return 1

    exported = set(re.findall(r" T (\S+)", subprocess.run(["nm", "-D", "--defined-only", str(shim_library)],
                                                         capture_output=True, text=True, check=True).stdout))
    log = "".join(path.read_text(errors="replace") for path in work_dir.glob("bindings.*"))
    called = set(re.findall(r"/cv2[^ /]*\.so \[\d+\] to \S*libopenblasp\S* \[\d+\]: normal symbol `([^']+)'", log))
    if not exported or exported - called - set(DIRECT_CALLS):
        print(f"check: nothing called {sorted(exported - called - set(DIRECT_CALLS)) or 'the shim'}")
        return 1
    print(f"check: cv2 called {len(called & exported)} of the shim's {len(exported)} functions "
          f"(the check called {', '.join(sorted(exported - called))} directly)")

    real, shim = np.load(outputs["real"]), np.load(outputs["shim"])
    failures = [f"  {key}: {problem}" for key in real.files
                if (problem := difference(real[key], shim[key]) if key in shim.files else "missing")]
    failures += [f"  {key}: only with the shim" for key in shim.files if key not in real.files]
    if failures:
        print(f"check: {len(failures)} of {len(real.files)} results differ with the shim:")
        print("\n".join(failures[:40]))
        return 1
    print(f"check: all {len(real.files)} results agree (float32 within 1e-5, float64 within 1e-10)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--compute":
        computed = compute()
        opencv_blas, numpy_blas = _loaded_blas()
        np.savez(sys.argv[2], **computed)
        print(f"{len(computed)} results; numpy's OpenBLAS mapped: {numpy_blas}; loaded {opencv_blas}")
        sys.exit(0)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))
