"""Every process of a distributed run starts as rank 0 does: ``share_start``.

Rank 0 alone has read the checkpoint (no shared file system is needed), so it sends
what decides the rest of the run: the weights (initial or resumed) in one broadcast
of the flat parameter buffer, the momentum buffers in one more, and the random state,
the epoch to start from and the records so far as one small object. The processes
then hold the same weights bit for bit, and keep them: each step applies the same
summed gradient to them (``tinyalex/train/epoch.py``). ``check_same_inputs`` first
makes sure that every process trains the same recipe on the same data.
"""

from __future__ import annotations

import zlib

import numpy as np

from .. import backend as B
from .. import random as R


def check_same_inputs(group, recipe: dict, arrays) -> None:
    """Raise ValueError on a process whose recipe or data (``arrays``: the training and
    test images and labels) differ from rank 0's: each machine reads its own copy of
    the data set, and a different copy would silently train on other examples."""
    mine = {"recipe": recipe, "data": [(a.shape, zlib.crc32(np.ascontiguousarray(a)))
                                       for a in arrays]}
    theirs = group.broadcast_object(mine)
    if mine["recipe"] != theirs["recipe"]:
        diff = {k: (theirs["recipe"].get(k), v) for k, v in mine["recipe"].items()
                if theirs["recipe"].get(k) != v}
        raise ValueError(f"process {group.rank}'s recipe differs from rank 0's "
                         f"(rank 0, this process: {diff}); every process must train the "
                         "same recipe")
    names = ("training images", "training labels", "test images", "test labels")
    for name, (shape, crc), (shape0, crc0) in zip(names, mine["data"], theirs["data"]):
        if (shape, crc) != (shape0, crc0):
            raise ValueError(f"process {group.rank} on {group.host} reads other {name} "
                             f"than rank 0 (shape {shape}, CRC-32 {crc:08x}; rank 0: "
                             f"{shape0}, {crc0:08x}); give every machine the same copy of "
                             "the data set (--data-dir)")


def share_start(group, optimizer, start: int, records: list):
    """Make every process's weights, momentum and random state rank 0's; returns rank
    0's ``(start, records)``. ``optimizer`` holds a FlatParameters (``.flat``)."""
    flat = optimizer.flat
    present = [b is not None for b in optimizer.momentum_buffers]
    shared = group.broadcast_object({
        "start": start, "records": records, "rng_state": R.get_rng_state(),
        "lr": optimizer.lr, "momentum": optimizer.momentum,
        "weight_decay": optimizer.weight_decay, "present": present})
    group.broadcast_in_place(flat.data)                              # (total,)
    if any(shared["present"]):
        moments = B.get_array_module(flat.data).zeros_like(flat.data)   # (total,)
        if group.rank == 0:
            for p, o, b in zip(flat.params, flat.offsets, optimizer.momentum_buffers):
                if b is not None:
                    moments[o:o + p.numel()] = b.reshape(-1)     # (p.numel(),) = p.shape
        group.broadcast_in_place(moments)
        if group.rank != 0:
            optimizer.load_state_dict({
                "lr": shared["lr"], "momentum": shared["momentum"],
                "weight_decay": shared["weight_decay"],
                # each parameter's span of (total,) as p.shape, as FlatParameters lays it
                "momentum_buffers": [moments[o:o + p.numel()].reshape(p.shape) if here else None
                                     for p, o, here in zip(flat.params, flat.offsets,
                                                           shared["present"])]})
    R.set_rng_state(shared["rng_state"])
    return shared["start"], shared["records"]
