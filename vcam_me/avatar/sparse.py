"""A fixed sparse linear map from mesh displacements to a grid of displacements, in numpy.

The renderer's warp is ``field = W @ d``: ``W`` is ``(n_points, n_sources)`` with a handful of
non-zeros per row (three barycentric weights inside the face; two boundary vertices and three
control points outside it; none far from the head), ``d`` is ``(n_sources, 2)`` (x, y) and
``field`` is ``(n_points, 2)``. It is evaluated 60 times a second, so the layout is chosen
for that product:

- the rows are kept sorted by how many non-zeros they have (most first), so the k-th
  non-zero of every row that has one forms a prefix of that order, and the product is a few
  whole-array gathers and multiply-adds with no per-row work;
- ``d`` is read as ``n_sources`` complex numbers (x + iy), so one gather fetches both
  components of a source;
- the result is put back into grid order with one final gather.

Each row's non-zeros are summed in the order of their column indices, the order a CSR
matrix uses, so the product matches a CSR sparse-dense product of the same float32 data.
On disk the map is stored as CSR arrays (data, indices, indptr, shape).
"""

from __future__ import annotations

import numpy as np


class SparseRows:
    """``(n_rows, n_cols)`` sparse float32 matrix applied to ``(n_cols, 2)`` displacements.

    Build it with :meth:`from_coo` or :meth:`from_csr`; ``matrix @ d`` gives ``(n_rows, 2) float32``.
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
        """Takes canonical CSR arrays (see :meth:`from_csr`, which checks them)."""
        self.data = data
        self.indices = indices
        self.indptr = indptr
        self.shape = shape
        counts = np.diff(indptr)
        # most non-zeros first; stable, so rows with the same count keep their grid order
        order = np.argsort(-counts, kind="stable")
        self._unsort = np.empty_like(order)
        self._unsort[order] = np.arange(len(order))
        sorted_counts = counts[order]
        self._columns: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        for k in range(int(counts.max(initial=0))):
            rows = order[: int(np.count_nonzero(sorted_counts > k))]
            at = indptr[rows] + k
            self._columns.append(indices[at].astype(np.intp))
            # each weight twice: it multiplies the x and the y of the gathered complex pair
            self._weights.append(np.repeat(data[at][:, None], 2, axis=1))

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    @classmethod
    def from_coo(cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> SparseRows:
        """The matrix with ``values[i]`` at ``(rows[i], cols[i])``; repeated positions are summed
        (in the order given). Zero values are kept, as entries."""
        rows = np.asarray(rows, np.int64).ravel()
        cols = np.asarray(cols, np.int64).ravel()
        values = np.asarray(values, np.float32).ravel()
        n_rows, n_cols = (int(n) for n in shape)
        if not rows.size == cols.size == values.size:
            raise ValueError(f"rows, cols and values differ in length: {rows.size}, {cols.size}, {values.size}")
        if rows.size and (rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols):
            raise ValueError(f"an entry lies outside the shape {(n_rows, n_cols)}")
        order = np.lexsort((cols, rows))  # stable: repeated positions stay in input order
        rows, cols, values = rows[order], cols[order], values[order]
        starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]) if rows.size else \
            np.zeros(0, np.intp)
        summed = np.add.reduceat(values, starts) if rows.size else np.zeros(0, np.float32)
        indptr = np.zeros(n_rows + 1, np.int32)
        np.cumsum(np.bincount(rows[starts], minlength=n_rows), out=indptr[1:])
        return cls(summed.astype(np.float32), cols[starts].astype(np.int32), indptr, (n_rows, n_cols))

    @classmethod
    def from_csr(cls, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape) -> SparseRows:
        """From CSR arrays (as :meth:`csr_arrays` gives, or a ``scipy.sparse.csr_matrix``'s
        ``data``, ``indices``, ``indptr``, ``shape``). Raises ValueError when they do not
        describe a ``shape`` matrix."""
        data = np.asarray(data, np.float32).ravel()
        indices = np.asarray(indices).ravel()
        indptr = np.asarray(indptr).ravel()
        n_rows, n_cols = (int(n) for n in shape)
        if indptr.size != n_rows + 1 or indptr[0] != 0 or indptr[-1] != data.size or data.size != indices.size:
            raise ValueError(f"CSR arrays do not describe a {n_rows}x{n_cols} matrix "
                             f"(indptr {indptr.size}, data {data.size}, indices {indices.size})")
        if np.any(np.diff(indptr) < 0) or (indices.size and (indices.min() < 0 or indices.max() >= n_cols)):
            raise ValueError(f"CSR arrays do not describe a {n_rows}x{n_cols} matrix (bad indptr or indices)")
        return cls(data, indices.astype(np.int32), indptr.astype(np.int32), (n_rows, n_cols))

    def csr_arrays(self) -> dict[str, np.ndarray]:
        """``data``, ``indices``, ``indptr``, ``shape``: the CSR form, for storing."""
        return {"data": self.data, "indices": self.indices, "indptr": self.indptr,
                "shape": np.asarray(self.shape, np.int64)}

    def __matmul__(self, displacements: np.ndarray) -> np.ndarray:
        """``(n_rows, 2) float32`` = this matrix @ ``displacements (n_cols, 2)``."""
        d = np.ascontiguousarray(displacements, np.float32)
        if d.shape != (self.shape[1], 2):
            raise ValueError(f"displacements must be ({self.shape[1]}, 2), got {d.shape}")
        pairs = d.view(np.complex64).reshape(-1)
        n = self.shape[0]
        total = np.zeros(n, np.complex64)  # rows without non-zeros stay 0 (they sort last)
        total_xy = total.view(np.float32).reshape(n, 2)
        if self._columns:
            scratch = np.empty(len(self._columns[0]), np.complex64)
        for columns, weights in zip(self._columns, self._weights):
            m = len(columns)
            gathered = np.take(pairs, columns, out=scratch[:m])
            gathered_xy = gathered.view(np.float32).reshape(m, 2)
            gathered_xy *= weights
            total_xy[:m] += gathered_xy
        return np.take(total, self._unsort).view(np.float32).reshape(n, 2)
