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


# Phases `parallel_phases` can run in one call.
comptime MAX_PHASES = 8


@always_inline
def parallel_phases[
    FuncType: def(Int, Int) register_passable -> None
](body: FuncType, chunks: Array[Int, MAX_PHASES]):
    """Runs body(phase, i) for every i < chunks[phase], phase by phase, on every core at once.

    A chunk starts only once every chunk of the earlier phases is done, so a phase may read
    what the one before it wrote. One launch of the cores serves all the phases (launching
    them costs about 7 us here, more than a small model's phase). Cores claim chunks in
    order and only wait for chunks already claimed, which a running core is finishing: a
    core that starts late, or never, holds nothing up.
    """
    var ends = Array[Int, MAX_PHASES](fill=0)
    var total = 0
    for phase in range(MAX_PHASES):
        total += chunks[phase]
        ends[phase] = total
    var claimed = Atomic[Int64](0)
    var finished = Atomic[Int64](0)
    var claimed_ptr = Pointer(to=claimed)
    var finished_ptr = Pointer(to=finished)

    def worker(_core: Int) {imm}:
        var phase = 0
        var phase_start = 0  # the index of the phase's first chunk
        while True:
            var chunk = Int(claimed_ptr[].fetch_add(1))
            if chunk >= total:
                return
            while chunk >= ends[phase]:
                phase_start = ends[phase]
                phase += 1
            while Int(finished_ptr[].load()) < phase_start:
                pass
            body(phase, chunk - phase_start)
            _ = finished_ptr[].fetch_add(1)

    sync_parallelize(worker, num_physical_cores())
