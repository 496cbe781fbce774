"""Several mice in one training run: ``SensoriumDataset`` (one ``MouseDataset`` per
mouse) and ``MouseBatchSampler`` (batches each from one mouse, since neuron counts
differ; reproducible from a seed; its position saved and restored with
``state_dict``/``load_state_dict``).

The sampler draws everything random (the order of samples, the random windows' starts,
the order of mice) in the main process from ``(seed, epoch)``, and hands the dataset
explicit keys, so the sequence of batches is the same whatever the number of workers,
and a resumed run replays the rest of an epoch exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from .._mouse import Mouse, open_sensorium
from ..errors import SelectionError
from ._dataset import MouseDataset

__all__ = ["SensoriumDataset", "MouseBatchSampler", "INTERLEAVE"]

#: ``round_robin``: mice take turns, one batch each, until each runs out;
#: ``proportional``: mice in a random order, each batch's mouse drawn in proportion to
#: its batches (so to its trials) and every batch of the epoch used once.
INTERLEAVE: tuple[str, ...] = ("round_robin", "proportional")


class SensoriumDataset(Dataset[dict[str, Any]]):
    """One ``MouseDataset`` per mouse of ``mice`` (a folder of stores, as
    ``open_sensorium`` opens it, or ``{name: Mouse}``), all with the same options.

    Indexed by ``(mouse, position)`` or ``(mouse, position, start)`` (what
    ``MouseBatchSampler`` gives); ``neurons``, if given, maps a mouse to its selection.
    """

    def __init__(
        self,
        mice: Mapping[str, Mouse] | str | os.PathLike[str],
        split: str = "train",
        *,
        neurons: Mapping[str, Any] | None = None,
        engine: str | None = None,
        **options: Any,
    ) -> None:
        if isinstance(mice, (str, os.PathLike)):
            mice = open_sensorium(mice, engine=engine)
        if not mice:
            raise SelectionError("SensoriumDataset: no mouse given")
        neurons = dict(neurons or {})
        unknown = sorted(set(neurons) - set(mice))
        if unknown:
            raise SelectionError(f"SensoriumDataset: neurons given for unknown mice {unknown}; mice: {sorted(mice)}")
        self.datasets: dict[str, MouseDataset] = {
            name: MouseDataset(mouse, split, neurons=neurons.get(name), **options)
            for name, mouse in sorted(mice.items())
        }

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{name} {len(d)}" for name, d in self.datasets.items())
        return f"<SensoriumDataset {len(self.datasets)} mice: {counts} samples>"

    def __getitem__(self, key: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(key, tuple) or len(key) not in (2, 3):
            raise KeyError(f"SensoriumDataset: key {key!r}; expected (mouse, position) or (mouse, position, start)")
        name, *rest = key
        dataset = self.datasets.get(name)
        if dataset is None:
            raise KeyError(f"SensoriumDataset: no mouse {name!r}; mice: {', '.join(self.datasets)}")
        return dataset[rest[0] if len(rest) == 1 else (rest[0], rest[1])]


class MouseBatchSampler(Sampler[list[Any]]):
    """Batches of ``batch_size`` samples of one mouse each, for ``DataLoader(dataset,
    batch_sampler=...)`` over a ``SensoriumDataset`` (or one ``MouseDataset``).

    Every epoch uses every sample once (the last, smaller batch of each mouse dropped
    with ``drop_last``), in an order drawn from ``(seed, epoch)`` (``shuffle=False``:
    store order), with mice interleaved per ``interleave`` (``INTERLEAVE``).
    ``state_dict()`` says where the sampler is; ``load_state_dict`` on a fresh sampler
    continues from there. A DataLoader with workers asks for batches ahead of the loop,
    so with workers save ``state_dict(consumed=<batches the loop has taken this epoch>)``.
    """

    def __init__(
        self,
        dataset: SensoriumDataset | MouseDataset,
        batch_size: int,
        *,
        interleave: str = "round_robin",
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SelectionError(f"MouseBatchSampler: batch_size={batch_size!r}; expected a positive integer")
        if interleave not in INTERLEAVE:
            raise SelectionError(
                f"MouseBatchSampler: interleave={interleave!r}; expected one of {', '.join(INTERLEAVE)}"
            )
        self._keyed = isinstance(dataset, SensoriumDataset)
        self.datasets = dataset.datasets if isinstance(dataset, SensoriumDataset) else {dataset.mouse: dataset}
        self.batch_size = batch_size
        self.interleave = interleave
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        #: The epoch being played (or next to play), and batches of it already handed out.
        self.epoch = 0
        self.position = 0

    def _batches(self, count: int) -> int:
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __len__(self) -> int:
        return sum(self._batches(len(d)) for d in self.datasets.values())

    def plan(self, epoch: int) -> list[list[Any]]:
        """Every batch of ``epoch``, in order: lists of dataset keys."""
        rng = np.random.default_rng([self.seed, epoch])
        per_mouse: dict[str, list[list[Any]]] = {}
        for name, dataset in self.datasets.items():
            n = len(dataset)
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            starts = dataset.starts[order]
            if dataset.windows.mode == "random":
                room = dataset.real_frames[dataset.trials[order]] - dataset.windows.span + 1
                starts = rng.integers(0, room)
            keys: list[Any] = [
                (name, int(i), int(s)) if self._keyed else (int(i), int(s))
                for i, s in zip(order.tolist(), starts.tolist(), strict=True)
            ]
            batches = [keys[b : b + self.batch_size] for b in range(0, n, self.batch_size)]
            if self.drop_last and batches and len(batches[-1]) < self.batch_size:
                batches.pop()
            per_mouse[name] = batches
        if self.interleave == "round_robin":
            out: list[list[Any]] = []
            for turn in range(max((len(b) for b in per_mouse.values()), default=0)):
                out += [batches[turn] for batches in per_mouse.values() if turn < len(batches)]
            return out
        labels = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(per_mouse.values())])
        sequence = rng.permutation(labels) if self.shuffle else labels
        queues = [iter(b) for b in per_mouse.values()]
        return [next(queues[int(i)]) for i in sequence]

    def __iter__(self) -> Iterator[list[Any]]:
        plan = self.plan(self.epoch)
        if self.position >= len(plan):
            # The saved state ended an epoch: go on with the next one.
            self.epoch, self.position = self.epoch + 1, 0
            plan = self.plan(self.epoch)
        while self.position < len(plan):
            batch = plan[self.position]
            self.position += 1
            yield batch

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """Where the sampler is: ``seed``, ``epoch`` and ``position`` (batches of the epoch
        done; ``consumed`` overrides the batches handed out, for loaders with workers)."""
        position = self.position if consumed is None else int(consumed)
        if not 0 <= position <= len(self):
            raise SelectionError(f"MouseBatchSampler: consumed={consumed!r} outside 0..{len(self)}")
        return {"seed": self.seed, "epoch": self.epoch, "position": position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state`` (from ``state_dict`` of a sampler over the same data)."""
        missing = {"seed", "epoch", "position"} - set(state)
        if missing:
            raise SelectionError(f"MouseBatchSampler: state lacks {sorted(missing)}")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
