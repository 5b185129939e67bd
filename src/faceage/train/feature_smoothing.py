"""Feature-distribution smoothing (FDS; Yang et al. 2021, "Delving into Deep Imbalanced Regression"), for training.

A network learns the features of common ages from many faces and those of rare ages from few, so the statistics of
the features of a rare age are noisy. FDS keeps, for every age 0-100, a running mean and variance of the features
that the head reads (the backbone's pooled output), smooths them across neighbouring ages with a Gaussian kernel,
and during training re-scales each face's features from its own age's statistics to the smoothed ones before the
head sees them. The statistics are gathered over each training epoch (summed across processes under DDP) and folded
into the running ones at the epoch's end. Evaluation, export and inference never calibrate: the head learns to read
smoothed features, and the exported network is the same network as without FDS.

The smoothing runs over the ages seen in training only (an age no face has keeps no statistics of its own and lends
none to its neighbours); variance ratios are clipped to [0.1, 10], as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch

from faceage.distribution import MAX_AGE_CLASS
from faceage.errors import FaceageError

RATIO_CLIP = (0.1, 10.0)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Weights of a Gaussian of ``sigma`` years over the age differences -3σ..3σ (at least ±1)."""
    if sigma <= 0:
        raise FaceageError(f"fds_sigma must be above 0 years, got {sigma}")
    half = max(1, int(np.ceil(3 * sigma)))
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    return torch.exp(-(offsets**2) / (2 * sigma**2))


class FeatureSmoothing:
    """Per-age feature statistics of one training run: gather with :meth:`gather`, fold in with
    :meth:`end_epoch`, apply with :meth:`calibrate`. Its state travels in the checkpoint (:meth:`state_dict`), not
    among the module's buffers (weight averaging would average it)."""

    def __init__(self, dim: int, sigma: float = 2.0, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:
            raise FaceageError(f"fds_momentum must be in [0, 1), got {momentum}")
        self.kernel = gaussian_kernel(sigma)
        self.momentum = momentum
        ages = MAX_AGE_CLASS + 1
        self.running_mean = torch.zeros(ages, dim, dtype=torch.float64)
        self.running_var = torch.ones(ages, dim, dtype=torch.float64)
        self.seen = torch.zeros(ages, dtype=torch.bool)  # ages with statistics of their own
        self.epochs = 0  # epochs folded in; calibration starts after the first
        self._reset_sums(dim)
        self.smoothed_mean, self.smoothed_var = self.running_mean.clone(), self.running_var.clone()

    def _reset_sums(self, dim: int) -> None:
        ages = MAX_AGE_CLASS + 1
        self._count = torch.zeros(ages, dtype=torch.float64)
        self._sum = torch.zeros(ages, dim, dtype=torch.float64)
        self._sum_sq = torch.zeros(ages, dim, dtype=torch.float64)

    @staticmethod
    def age_index(ages: torch.Tensor) -> torch.Tensor:
        return ages.round().long().clamp(0, MAX_AGE_CLASS).cpu()

    def gather(self, features: torch.Tensor, ages: torch.Tensor) -> None:
        """Add a training batch's features (before calibration) to this epoch's sums."""
        index = self.age_index(ages)
        values = features.detach().to("cpu", torch.float64)
        self._count.index_add_(0, index, torch.ones(len(index), dtype=torch.float64))
        self._sum.index_add_(0, index, values)
        self._sum_sq.index_add_(0, index, values**2)

    def end_epoch(self, reduce=None) -> None:
        """Fold this epoch's statistics into the running ones and smooth them. ``reduce`` sums a tensor across
        processes (DDP); without it the sums are this process's own."""
        sums = torch.cat([self._count[:, None], self._sum, self._sum_sq], dim=1)
        if reduce is not None:
            sums = reduce(sums)
        count, total, total_sq = sums[:, 0], sums[:, 1 : 1 + self._sum.shape[1]], sums[:, 1 + self._sum.shape[1] :]
        self._reset_sums(self._sum.shape[1])
        present = count > 0
        if not present.any():
            return
        mean = total[present] / count[present, None]
        # unbiased where an age has two faces or more; one face gives no spread: keep the running variance
        spread = (total_sq[present] - count[present, None] * mean**2).clamp(min=0)
        var = torch.where(count[present, None] > 1, spread / (count[present, None] - 1).clamp(min=1),
                          self.running_var[present])  # fmt: skip
        fresh = present & ~self.seen  # an age's first statistics are taken as they are
        factor = torch.where(fresh[present], 0.0, self.momentum)[:, None].double()
        self.running_mean[present] = factor * self.running_mean[present] + (1 - factor) * mean
        self.running_var[present] = factor * self.running_var[present] + (1 - factor) * var
        self.seen |= present
        self.epochs += 1
        self.smoothed_mean = self._smooth(self.running_mean)
        self.smoothed_var = self._smooth(self.running_var)

    def _smooth(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` averaged over neighbouring ages with the Gaussian kernel, over seen ages only."""
        weights = self.seen.double()[None, None]
        kernel = self.kernel[None, None]
        pad = len(self.kernel) // 2
        masked = (values * self.seen.double()[:, None]).T[:, None]  # (dim, 1, ages)
        numerator = torch.nn.functional.conv1d(masked, kernel, padding=pad)[:, 0].T
        denominator = torch.nn.functional.conv1d(weights, kernel, padding=pad)[0, 0][:, None]
        smoothed = numerator / denominator.clamp(min=1e-12)
        return torch.where(self.seen[:, None], smoothed, values)

    @property
    def active(self) -> bool:
        """Whether :meth:`calibrate` changes features: after the first epoch's statistics are in."""
        return self.epochs > 0

    def calibrate(self, features: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """Each face's features moved from its age's running statistics to the smoothed ones (gradients flow)."""
        if not self.active:
            return features
        index = self.age_index(ages)
        seen = self.seen[index].to(features.device)
        mean = self.running_mean[index].to(features.device, features.dtype)
        var = self.running_var[index].to(features.device, features.dtype)
        target_mean = self.smoothed_mean[index].to(features.device, features.dtype)
        target_var = self.smoothed_var[index].to(features.device, features.dtype)
        ratio = (target_var / var.clamp(min=1e-12)).clamp(*RATIO_CLIP).sqrt()
        calibrated = (features - mean) * ratio + target_mean
        return torch.where(seen[:, None], calibrated, features)

    def state_dict(self) -> dict:
        return {"running_mean": self.running_mean, "running_var": self.running_var, "seen": self.seen,
                "epochs": self.epochs, "count": self._count, "sum": self._sum, "sum_sq": self._sum_sq}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.running_mean, self.running_var = state["running_mean"].double(), state["running_var"].double()
        self.seen, self.epochs = state["seen"].bool(), int(state["epochs"])
        self._count, self._sum, self._sum_sq = state["count"], state["sum"], state["sum_sq"]
        self.smoothed_mean = self._smooth(self.running_mean)
        self.smoothed_var = self._smooth(self.running_var)
        if self._count.sum() > 0:
            # a checkpoint taken at validation holds its epoch's sums unfolded (the fold comes at the epoch's end,
            # after validation): fold them now, so a resumed run goes on from that epoch's statistics
            self.end_epoch()
