"""Work split across the CPU's cores by claiming, not by assignment.

MAX's runtime pins each task of `sync_parallelize` to one worker's queue, so work divided
evenly in advance finishes when the slowest core does; on this kind of shared machine the two
cores stream memory at 11-16 GB/s each, and a product split in halves ran at the slower rate
twice over. Here every core takes the next chunk when it is free, so both finish together.
"""

from max.algorithm import sync_parallelize
from std.atomic import Atomic
from std.math import ceildiv
from std.sys.info import num_physical_cores


@always_inline
def parallel_chunks[
    FuncType: def(Int, Int) register_passable -> None
](body: FuncType, total: Int, chunk: Int):
    """Runs body(first, last) over [0, total) in chunks of `chunk`, on every core at once."""
    var next_first = Atomic[Int64](0)
    var next_first_ptr = Pointer(to=next_first)

    def worker(_core: Int) {imm}:
        while True:
            var first = Int(next_first_ptr[].fetch_add(Int64(chunk)))
            if first >= total:
                return
            body(first, min(first + chunk, total))

    sync_parallelize(worker, min(num_physical_cores(), ceildiv(total, chunk)))
