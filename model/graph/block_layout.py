"""The layout in which the CPU kernels read a matrix of llama.cpp blocks: rows in groups of 16.

GGUF stores a Q8_0 or Q4_0 matrix as each row's blocks in order. The kernels multiply 16 rows
of W at a time, one per int32 lane of an AVX-512 `vpdpbusd`, so they take the same bytes
regrouped: for each group of 16 rows and each block index, the 16 rows' float16 scales, then
for each 4 bytes of the block's quants the 16 rows' 4 bytes side by side. A vector load then
holds 16 rows' products with 4 values of x, and a block's scaling is one vector op for 16 rows
(`model/graph/kernels/quantized.mojo` reads it). The rows are padded with zero blocks to a multiple
of 16, so a product's result has that many columns; the bytes are the same in number
otherwise. Regrouping is a copy as the weights are bound, 1.0-2.3 GB/s here (1-3 s for the 3B
model; moved a byte at a time and a whole matrix per copy it was 0.4 GB/s); GGUF's own layout
is what files hold.
"""

from __future__ import annotations

import numpy as np

from model.weights.tensors import BlockFormat

GROUP_ROWS = 16
# Bytes of quants that one lane of a vector holds: `vpdpbusd` sums four products per lane.
LANE_BYTES = 4
# Groups that one copy of the regrouping moves: 8 groups of a 3072-wide Q8_0 matrix are 400 KB,
# about an L2 cache (2-32 measured within the noise of each other; 1 leaves NumPy's per-call
# cost showing).
GROUPS_PER_COPY = 8


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
    # Moved as whole float16 scales and 4-byte lanes, a few groups at a time, so that each
    # copy's source and destination stay in the cache.
    for first in range(0, groups, GROUPS_PER_COPY):
        source = per_block[first : first + GROUPS_PER_COPY]
        target = grouped[first : first + GROUPS_PER_COPY]
        n = source.shape[0]
        scales = target[..., : 2 * GROUP_ROWS].view(np.uint16)
        scales[...] = source[..., :2].view(np.uint16)[..., 0].transpose(0, 2, 1)
        quants = target[..., 2 * GROUP_ROWS :].view(np.uint32).reshape(n, count, lanes, GROUP_ROWS)
        quants[...] = source[..., 2:].view(np.uint32).transpose(0, 2, 3, 1)
    return grouped.reshape(blocks.shape)
