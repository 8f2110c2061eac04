"""Ranks, sharding and the random streams: why a 2-process run equals a 1-process run.

Design (issue 15): a run on W processes computes what one process computes, up to float rounding.
  * Every random draw comes from a generator seeded by (seed, phase, epoch, purpose, …) — `stream` —
    never from a global generator. All ranks draw the same global quantities in the same order, so
    they agree on data batches, permutations, times and bridge noise without communicating, and a run
    resumed at an epoch boundary replays exactly (no generator state to save).
  * Simulation (the costly part of filling the buffers, asbm.md §2.4, §2.5, §3.1) is cut into chunks of
    --sim-batch rows; chunk c has its own stream and runs on rank c mod W. `gather_chunks` then gives
    every rank the whole result (an all-reduce of zero-padded tensors: x + 0 is exact), so each chunk's
    rows are the same numbers whatever W is.
  * A regression step's global minibatch of B rows is cut into W contiguous shards; each rank's loss is
    W·Σ_shard(w·f − y)²/(B·d), so DDP's gradient average is exactly the gradient of the global mean
    loss of one process (asbm.md §2.2: `.mean()` over batch and elements).
"""

import hashlib
import os

import torch
import torch.distributed as tdist


class Ctx:
    """The process's place in the run: rank, world size, device, and whether DDP is on."""

    def __init__(self, rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device, self.backend = device, backend

    @property
    def main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world > 1

    def shard(self, n):
        """The rows [lo, hi) of a global batch of n rows that this rank computes."""
        return self.rank * n // self.world, (self.rank + 1) * n // self.world

    def mine(self, chunk):
        """Whether simulation chunk number chunk runs on this rank (round robin)."""
        return chunk % self.world == self.rank

    def all_sum(self, x):
        """x summed over ranks (in place; x itself when there is one rank)."""
        if self.distributed:
            tdist.all_reduce(x, op=tdist.ReduceOp.SUM)
        return x

    def barrier(self):
        if self.distributed:
            tdist.barrier()


def setup(device="auto"):
    """Returns the Ctx of this process. Under torchrun (WORLD_SIZE, RANK, LOCAL_RANK set) it joins the
    process group, once per process: nccl when the device is a GPU, gloo otherwise. device is "cpu",
    "cuda" or "auto" (a GPU when torch sees one)."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no GPU (torch.cuda.is_available() is False)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
        # TF32 for float32 matrix products and convolutions (cuDNN's default for convolutions already):
        # tensor-core speed at a 10-bit mantissa, which training tolerates; the CPU path is unaffected.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    backend = None
    if world > 1:
        backend = "nccl" if device == "cuda" else "gloo"
        if not tdist.is_initialized():
            tdist.init_process_group(backend=backend)
        backend = tdist.get_backend()
    return Ctx(rank, world, local, dev, backend)


def stream(ctx, seed, *keys):
    """A torch.Generator on ctx's device seeded from (seed, keys): the same numbers on every rank and
    in every run with that seed. keys are strings and integers naming the draw ("stage1", epoch,
    "fill", chunk)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(keys)).encode()).digest()
    g = torch.Generator(device=ctx.device)
    g.manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))
    return g


def chunks(n, size):
    """[(chunk number, lo, hi)] cutting n rows into chunks of size rows (the last one smaller)."""
    return [(c, lo, min(lo + size, n)) for c, lo in enumerate(range(0, n, size))]


def gather_chunks(ctx, n, size, shape, k, run):
    """Runs run(chunk, lo, hi) → a tuple of k float32 tensors [hi−lo, *shape] for this rank's chunks
    of n rows and returns the k full [n, *shape] tensors on every rank (see the module doc)."""
    out = [torch.zeros((n,) + tuple(shape), dtype=torch.float32, device=ctx.device) for _ in range(k)]
    for c, lo, hi in chunks(n, size):
        if ctx.mine(c):
            for o, p in zip(out, run(c, lo, hi)):
                o[lo:hi] = p
    for o in out:
        ctx.all_sum(o)
    return tuple(out)
