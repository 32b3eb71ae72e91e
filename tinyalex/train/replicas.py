"""Every process of a distributed run starts as rank 0 does: ``share_start``.

Rank 0 alone has read the checkpoint (no shared file system is needed), so it sends
what decides the rest of the run: the weights (initial or resumed) in one broadcast
of the flat parameter buffer, the momentum buffers in one more, and the random state,
the epoch to start from and the records so far as one small object. The processes
then hold the same weights bit for bit, and keep them: each step applies the same
summed gradient to them (``tinyalex/train/epoch.py``).
"""

from __future__ import annotations

from .. import backend as B
from .. import random as R


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
                    moments[o:o + p.size] = b.reshape(-1)
        group.broadcast_in_place(moments)
        if group.rank != 0:
            optimizer.load_state_dict({
                "lr": shared["lr"], "momentum": shared["momentum"],
                "weight_decay": shared["weight_decay"],
                "momentum_buffers": [moments[o:o + p.size].reshape(p.shape) if here else None
                                     for p, o, here in zip(flat.params, flat.offsets,
                                                           shared["present"])]})
    R.set_rng_state(shared["rng_state"])
    return shared["start"], shared["records"]
