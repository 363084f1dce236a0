"""The layout in which the CPU kernels read a matrix of llama.cpp blocks: rows in groups of 16.

GGUF stores a Q8_0 or Q4_0 matrix as each row's blocks in order. The kernels multiply 16 rows
of W at a time, one per int32 lane of an AVX-512 `vpdpbusd`, so they take the same bytes
regrouped: for each group of 16 rows and each block index, the 16 rows' float16 scales, then
for each 4 bytes of the block's quants the 16 rows' 4 bytes side by side. A vector load then
holds 16 rows' products with 4 values of x, and a block's scaling is one vector op for 16 rows
(`model/kernels/quantized.mojo` reads it). The rows are padded with zero blocks to a multiple
of 16, so a product's result has that many columns; the bytes are the same in number
otherwise. Regrouping is a copy as the weights are bound (0.25-0.37 GB/s here: NumPy's
transposes of 4-byte pieces, 7-10 s for the 3B model); GGUF's own layout is what files hold.
"""

from __future__ import annotations

import numpy as np

from model.checkpoint import BlockFormat

GROUP_ROWS = 16
# Bytes of quants that one lane of a vector holds: `vpdpbusd` sums four products per lane.
LANE_BYTES = 4


def grouped_rows(rows: int) -> int:
    """Rows of the kernels' tensor for a matrix of `rows` rows: a whole number of groups."""
    return -(-rows // GROUP_ROWS) * GROUP_ROWS


def grouped_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The kernels' uint8 shape for GGUF block rows of `shape` [N, K / 32 * block bytes]."""
    rows, row_bytes = shape
    return grouped_rows(rows), row_bytes


def group_rows(blocks: np.ndarray, fmt: BlockFormat) -> np.ndarray:
    """GGUF block rows uint8 [N, K / 32 * block bytes] regrouped as the kernels read them."""
    rows, row_bytes = blocks.shape
    if rows % GROUP_ROWS:
        padded = np.zeros((grouped_rows(rows), row_bytes), np.uint8)
        padded[:rows] = blocks
        blocks = padded
    groups, count = blocks.shape[0] // GROUP_ROWS, row_bytes // fmt.block_bytes
    lanes = (fmt.block_bytes - 2) // LANE_BYTES
    per_block = blocks.reshape(groups, GROUP_ROWS, count, fmt.block_bytes)
    grouped = np.empty((groups, count, GROUP_ROWS * fmt.block_bytes), np.uint8)
    scales = grouped[..., : 2 * GROUP_ROWS].reshape(groups, count, GROUP_ROWS, 2)
    scales[...] = per_block[..., :2].transpose(0, 2, 1, 3)
    quants = grouped[..., 2 * GROUP_ROWS :].reshape(groups, count, lanes, GROUP_ROWS, LANE_BYTES)
    quants[...] = (
        per_block[..., 2:]
        .reshape(groups, GROUP_ROWS, count, lanes, LANE_BYTES)
        .transpose(0, 2, 3, 1, 4)
    )
    return grouped.reshape(blocks.shape)
