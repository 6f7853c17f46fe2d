"""Training rows of a table folder read in place: the batch sources (`batches`) gather
their rows from the folder's arrays, so memory does not grow with the table."""

from __future__ import annotations

import numpy as np
import torch

from seqtool.data.folders import Folder
from seqtool.data.scaling import Scaling


class FolderRows:
    """Training rows of a table read in place (the interface of `examples.Rows`): series
    `starts`/`lengths` of the folder's inputs; a batch's rows are gathered, their next-step
    targets taken from the row after (none at a series' last training row), and
    standardised as they are taken."""

    levels = None  # no --scale window: a folder with it is read into memory

    def __init__(self, folder: Folder, starts: np.ndarray, lengths: np.ndarray, scaling: Scaling, device):
        self.folder, self.scaling, self.device = folder, scaling, device
        self.starts, self.lengths = np.asarray(starts, np.int64), torch.from_numpy(np.asarray(lengths, np.int64))
        self.last = self.starts + self.lengths.numpy() - 1
        self.width = folder.x.shape[1]

    def take(self, index):
        i = index.cpu().numpy().reshape(-1, index.shape[-1])
        both = self.folder.x.take(np.concatenate([i, np.minimum(i + 1, len(self.folder.x) - 1)], axis=1))
        x, y = both[:, : i.shape[1]], both[:, i.shape[1] :]
        y[self.last[np.searchsorted(self.starts, i, side="right") - 1] == i] = np.nan
        x, y = x.reshape(*index.shape, -1), y.reshape(*index.shape, -1)
        x = self.scaling.inputs(x, self.folder.x_names, self.folder.source)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(self.scaling.targets(y)).to(self.device)

    def targets_in(self, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Rows in [first, stop) of the training series but their last rows."""
        return np.maximum(stop - first, 0) - (np.searchsorted(self.last, stop) - np.searchsorted(self.last, first))

    def target_count(self) -> int:
        return int(self.lengths.sum()) - len(self.starts)
