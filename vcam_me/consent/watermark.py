"""The invisible consent mark (consent-watermark.md §7.2): a keyed, tiled spread-spectrum
pattern in luma that carries the 48-bit consent ID.

Payload and code
    64 info bits = the 48-bit consent ID (MSB first) + CRC-16/CCITT-FALSE of its 6 bytes,
    encoded with a tail-biting rate-1/2 convolutional code (constraint length 7, generators
    171/133 octal, the "NASA" pair) into :data:`CODED_BITS` = 128 coded bits. The decoder
    feeds the per-bit correlations to a soft-decision Viterbi decoder
    (:func:`decode_codeword`), then checks the CRC.

Carrier (per key, canonical scale)
    A tile of 32 × 32 cells of :data:`CELL_PX` = 8 px (a 256 × 256 px tile at 720p). A keyed
    permutation picks 256 cells (25 %) as the **pilot** (keyed ±1 chips, message-independent:
    used by the decoder for sync and mirror detection) and assigns the other 768 cells to the
    128 coded bits, 6 cells each, scattered over the tile. A data cell's chip is
    ``keyed ±1 × (1 - 2·bit)``. Each chip is shaped by a separable half-sine pulse over its
    cell, so the energy sits at low-mid frequencies (≈ 1/16 cycle/px) that codecs keep, and
    the pattern is zero on cell borders. The tile repeats over the frame from (0, 0).

Embedding
    The pattern (``amplitude`` luma codes peak, rounded to integers) is computed once per
    session by :meth:`WatermarkEmbedder.create` and split into two uint8 planes (positive and
    negative parts). Per frame, :func:`apply_watermark` adds the same value to R, G and B with
    OpenCV's saturating ``add``/``subtract``: luma changes, chroma does not. The pattern is the
    same on every frame (codecs keep temporally static detail in skip blocks, and the decoder
    integrates over frames).

At other output heights the cell grows with the height (``round(8 · h / 720)`` px, minimum 4):
the decoder sees that as a scale change and searches for it anyway.

Everything here is a pure function of (key, consent ID, size), except the embedder object,
which only holds the precomputed planes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from vcam_me.types import RenderedFrame

#: Cells per tile side.
TILE_CELLS = 32
#: Cell size in pixels at the canonical (720p) scale.
CELL_PX = 8
#: Tile size in pixels at the canonical scale.
TILE_PX = TILE_CELLS * CELL_PX
#: Number of pilot cells per tile (25 %).
PILOT_CELLS = TILE_CELLS * TILE_CELLS // 4
#: Information bits: 48-bit ID + CRC-16.
INFO_BITS = 64
ID_BITS = 48
#: Coded bits after the rate-1/2 tail-biting convolutional code.
CODED_BITS = 2 * INFO_BITS
#: Data cells per coded bit in one tile.
CELLS_PER_BIT = (TILE_CELLS * TILE_CELLS - PILOT_CELLS) // CODED_BITS
#: Default peak amplitude in luma codes. 4.8 gives Y-PSNR 40.2 dB but a mesh that can be seen
#: at 100 % on flat or defocused areas; 3.5 (Y-PSNR 43.0 dB) is much fainter and still meets every
#: robustness target (benchmarks/results/watermark_robustness*.json compare 3.0, 3.5, 4.8).
DEFAULT_AMPLITUDE = 3.5
#: Name of this scheme, for soft-binding assertions and reports.
ALGORITHM = "vcam_me.ssluma.v1"

_K = 7  # constraint length
_G = (0o171, 0o133)
_STATES = 1 << (_K - 1)


# --------------------------------------------------------------------------- payload / ECC


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _check_id(consent_id: int) -> int:
    if isinstance(consent_id, bool) or not isinstance(consent_id, (int, np.integer)):
        raise TypeError(f"consent_id must be an int, got {type(consent_id).__name__}")
    consent_id = int(consent_id)
    if not 0 <= consent_id < (1 << ID_BITS):
        raise ValueError(f"consent_id must be in [0, 2**48), got {consent_id}")
    return consent_id


def payload_bits(consent_id: int) -> np.ndarray:
    """``(64,) uint8`` info bits: the 48-bit ID then its CRC-16, MSB first."""
    consent_id = _check_id(consent_id)
    crc = crc16(consent_id.to_bytes(6, "big"))
    word = (consent_id << 16) | crc
    return np.array([(word >> (INFO_BITS - 1 - i)) & 1 for i in range(INFO_BITS)], np.uint8)


def parse_payload(bits: np.ndarray) -> int | None:
    """The consent ID if the 64 info bits carry a valid CRC, else ``None``."""
    word = 0
    for b in np.asarray(bits, np.uint8).ravel()[:INFO_BITS]:
        word = (word << 1) | int(b)
    consent_id, crc = word >> 16, word & 0xFFFF
    return consent_id if crc16(consent_id.to_bytes(6, "big")) == crc else None


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """``prev[ns, j]`` predecessor states of next-state ``ns`` and the ±1 symbols
    ``sym[ns, j, 2]`` emitted on that branch. State = the last 6 input bits, newest in bit 5."""
    ns = np.arange(_STATES)
    bit = ns >> (_K - 2)
    prev = np.stack([((ns & (_STATES // 2 - 1)) << 1) | j for j in (0, 1)], axis=1)
    reg = (bit[:, None] << (_K - 1)) | prev
    sym = np.stack([1 - 2 * _parity(reg & g) for g in _G], axis=-1).astype(np.float32)
    return prev, sym


_PREV, _SYM = _trellis()


def encode_codeword(info: np.ndarray) -> np.ndarray:
    """Tail-biting rate-1/2 convolutional encoding: ``(n,)`` bits → ``(2n,) uint8``."""
    info = np.asarray(info, np.uint8).ravel()
    state = 0
    for b in info[-(_K - 1):]:  # start in the state the message ends in
        state = (int(b) << (_K - 2)) | (state >> 1)
    out = np.empty(2 * info.size, np.uint8)
    for i, b in enumerate(info):
        reg = (int(b) << (_K - 1)) | state
        out[2 * i] = bin(reg & _G[0]).count("1") & 1
        out[2 * i + 1] = bin(reg & _G[1]).count("1") & 1
        state = reg >> 1
    return out


def decode_codeword(soft: np.ndarray, wraps: int = 3) -> np.ndarray:
    """Soft-decision Viterbi decoding of a tail-biting codeword.

    Args:
        soft: ``(2n,) float`` correlations; positive means coded bit 0 (scale is irrelevant).
        wraps: the received block is decoded ``wraps`` times in a row (circular Viterbi) and
            the decisions of the middle copy are kept, so no start state needs guessing.

    Returns:
        ``(n,) uint8`` the most likely info bits.
    """
    y = np.asarray(soft, np.float32).reshape(-1, 2)
    n = y.shape[0]
    yy = np.tile(y, (wraps, 1))
    metric = np.zeros(_STATES, np.float32)
    choices = np.empty((yy.shape[0], _STATES), np.uint8)
    for t in range(yy.shape[0]):
        cand = metric[_PREV] + _SYM @ yy[t]  # (states, 2)
        j = np.argmax(cand, axis=1)
        choices[t] = j
        metric = cand[np.arange(_STATES), j]
    state = int(np.argmax(metric))
    bits = np.empty(yy.shape[0], np.uint8)
    for t in range(yy.shape[0] - 1, -1, -1):
        bits[t] = state >> (_K - 2)
        state = int(_PREV[state, choices[t, state]])
    mid = (wraps // 2) * n
    return bits[mid:mid + n]


# --------------------------------------------------------------------------- carrier


def _rng(key: bytes, label: str) -> np.random.Generator:
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    if len(key) < 8:
        raise ValueError(f"key must be at least 8 bytes, got {len(key)}")
    digest = hashlib.sha256(ALGORITHM.encode() + b"|" + label.encode() + b"|" + bytes(key)).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))


@dataclass(frozen=True)
class Carrier:
    """The keyed layout of one tile (message-independent).

    Attributes:
        pilot_mask: ``(32, 32) bool``, True on pilot cells.
        pilot_chips: ``(32, 32) float32``, ±1 on pilot cells, 0 elsewhere.
        data_pn: ``(32, 32) float32``, keyed ±1 on data cells, 0 on pilot cells.
        bit_index: ``(32, 32) int16``, the coded bit a data cell carries, -1 on pilot cells.
    """

    pilot_mask: np.ndarray
    pilot_chips: np.ndarray
    data_pn: np.ndarray
    bit_index: np.ndarray


def make_carrier(key: bytes) -> Carrier:
    """The tile layout for ``key`` (pure)."""
    n = TILE_CELLS * TILE_CELLS
    order = _rng(key, "layout").permutation(n)
    pilot_mask = np.zeros(n, bool)
    pilot_mask[order[:PILOT_CELLS]] = True
    bit_index = np.full(n, -1, np.int16)
    bit_index[order[PILOT_CELLS:]] = np.arange(n - PILOT_CELLS) % CODED_BITS
    signs = _rng(key, "chips").integers(0, 2, n) * 2 - 1
    pilot_chips = np.where(pilot_mask, signs, 0).astype(np.float32)
    data_pn = np.where(pilot_mask, 0, signs).astype(np.float32)
    shape = (TILE_CELLS, TILE_CELLS)
    return Carrier(pilot_mask.reshape(shape), pilot_chips.reshape(shape), data_pn.reshape(shape),
                   bit_index.reshape(shape))


def pulse(cell_px: int) -> np.ndarray:
    """``(c, c) float32`` separable half-sine chip shape (peak ≈ 1, zero at the borders)."""
    t = np.sin(np.pi * (np.arange(cell_px) + 0.5) / cell_px).astype(np.float32)
    return np.outer(t, t)


def chips_to_tile(chips: np.ndarray, cell_px: int) -> np.ndarray:
    """``(32, 32)`` chip values → ``(32c, 32c) float32`` shaped tile."""
    return np.kron(chips.astype(np.float32), pulse(cell_px))


def cell_chips(carrier: Carrier, codeword: np.ndarray) -> np.ndarray:
    """``(32, 32) float32`` all chips of the tile: pilot plus data modulated by ``codeword``."""
    codeword = np.asarray(codeword, np.uint8).ravel()
    if codeword.size != CODED_BITS:
        raise ValueError(f"codeword must have {CODED_BITS} bits, got {codeword.size}")
    data = carrier.data_pn * (1.0 - 2.0 * codeword[np.maximum(carrier.bit_index, 0)])
    return np.where(carrier.pilot_mask, carrier.pilot_chips, data).astype(np.float32)


def cell_px_for(size: tuple[int, int]) -> int:
    """Cell size for an output of ``(width, height)``: 8 px at 720p, scaled with height."""
    return max(4, int(round(CELL_PX * size[1] / 720)))


def watermark_pattern(consent_id: int, key: bytes, size: tuple[int, int],
                      amplitude: float = DEFAULT_AMPLITUDE) -> np.ndarray:
    """``(h, w) int16`` additive luma pattern for a frame of ``size = (width, height)`` (pure)."""
    w, h = _check_size(size)
    if not 0 < amplitude <= 32:
        raise ValueError(f"amplitude must be in (0, 32] luma codes, got {amplitude}")
    codeword = encode_codeword(payload_bits(consent_id))
    cell = cell_px_for((w, h))
    tile = chips_to_tile(cell_chips(make_carrier(key), codeword), cell)
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]))
    full = np.tile(tile, reps)[:h, :w]
    return np.rint(amplitude * full).astype(np.int16)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be (width, height), got {size!r}") from None
    if w < 64 or h < 64:
        raise ValueError(f"size must be at least 64×64, got {w}×{h}")
    return w, h


def split_pattern(pattern: np.ndarray, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of an int16 pattern as ``(h, w, channels) uint8`` planes."""
    pos = np.clip(pattern, 0, 255).astype(np.uint8)
    neg = np.clip(-pattern, 0, 255).astype(np.uint8)
    if channels > 1:
        pos = np.ascontiguousarray(np.repeat(pos[:, :, None], channels, axis=2))
        neg = np.ascontiguousarray(np.repeat(neg[:, :, None], channels, axis=2))
    return pos, neg


def apply_watermark(image: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Add the mark to ``image`` **in place** with saturating arithmetic and return it.

    Args:
        image: ``(H, W, 3) uint8`` RGB (or BGR: the same value goes to every channel), or an
            ``(H, W) uint8`` luma plane; must be writable and C-contiguous.
        pos, neg: planes from :func:`split_pattern` with the same shape as ``image``.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.shape != pos.shape:
        raise ValueError(f"image shape {image.shape} != watermark shape {pos.shape}")
    cv2.add(image, pos, dst=image)
    cv2.subtract(image, neg, dst=image)
    return image


class WatermarkEmbedder:
    """Holds the precomputed planes of one session's mark; :meth:`embed` stamps frames.

    Build it with :meth:`create`; the constructor takes finished planes.
    """

    def __init__(self, pos: np.ndarray, neg: np.ndarray, consent_id: int, amplitude: float) -> None:
        self._pos = pos
        self._neg = neg
        self._luma_planes: tuple[np.ndarray, np.ndarray] | None = None
        self.consent_id = consent_id
        self.amplitude = amplitude

    @classmethod
    def create(cls, consent_id: int, key: bytes, size: tuple[int, int],
               amplitude: float = DEFAULT_AMPLITUDE) -> "WatermarkEmbedder":
        """Precompute the full-frame pattern for output frames of ``size = (width, height)``."""
        pattern = watermark_pattern(consent_id, key, size, amplitude)
        pos, neg = split_pattern(pattern, 3)
        return cls(pos, neg, _check_id(consent_id), float(amplitude))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` the planes were made for."""
        return int(self._pos.shape[1]), int(self._pos.shape[0])

    def embed(self, image: np.ndarray) -> np.ndarray:
        """Mark an ``(H, W, 3) uint8`` RGB frame (or an ``(H, W)`` luma plane) in place."""
        if image.ndim == 2:
            if self._luma_planes is None:
                self._luma_planes = (np.ascontiguousarray(self._pos[:, :, 0]),
                                     np.ascontiguousarray(self._neg[:, :, 0]))
            return apply_watermark(image, *self._luma_planes)
        return apply_watermark(image, self._pos, self._neg)

    def embed_frame(self, frame: RenderedFrame) -> RenderedFrame:
        """Mark a rendered frame in place (its image must be writable) and return it."""
        self.embed(frame.image)
        return frame
