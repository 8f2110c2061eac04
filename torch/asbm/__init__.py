"""ASBM training in PyTorch (issue 15): the algorithm of asbm.md as backend/asbm implements it in Go,
run single-process or under torchrun with DistributedDataParallel (gloo on CPUs, nccl on GPUs).

    vp.py        the VP base SDE, its bridge and the energy prior (asbm.md §1.2, §1.3)
    data.py      the 2-D toys (backend/data) and image sets (idx, .npy/.npz, PNG folders)
    png.py       a small PNG decoder (Debian's python3-torch comes without Pillow)
    dist.py      ranks, sharding, the seeded random streams and the collectives
    engine.py    a trainable network: DDP, AdamW, EMA, sharded regression steps; σ-scaled scores
    matchers.py  the AM, CM, BM, DSM and generator regressions, simulation, samplers, terminal check
    loops.py     stage 1, stage 2, the memoryless baseline and the distillation loops
    config.py    the defaults and flags of `backend train` (backend/train/config.go)

The entry point is torch/asbm_train.py; torch/ (with unet.py and mlp.py) must be on sys.path, as it
is when that script runs.
"""
