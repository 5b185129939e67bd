"""Feature-distribution smoothing: per-age statistics, their smoothing over neighbouring ages, the calibration."""

import pytest
import torch

from faceage.errors import FaceageError
from faceage.train.feature_smoothing import FeatureSmoothing


def faces_of_ages(ages_and_means: dict[int, float], per_age: int = 50, dim: int = 3, spread: float = 1.0):
    torch.manual_seed(0)
    features, ages = [], []
    for age, mean in ages_and_means.items():
        features.append(mean + spread * torch.randn(per_age, dim))
        ages.append(torch.full((per_age,), float(age)))
    return torch.cat(features), torch.cat(ages)


def test_nothing_changes_before_the_first_epoch_is_folded_in():
    smoothing = FeatureSmoothing(dim=3)
    features, ages = faces_of_ages({20: 0.0, 21: 4.0})
    smoothing.gather(features, ages)
    assert not smoothing.active
    assert torch.equal(smoothing.calibrate(features, ages), features)


def test_an_outlying_age_is_pulled_toward_its_neighbours_and_lonely_ages_keep_their_own():
    smoothing = FeatureSmoothing(dim=3, sigma=1.0)
    features, ages = faces_of_ages({20: 0.0, 21: 6.0, 22: 0.0, 60: 10.0})
    smoothing.gather(features, ages)
    smoothing.end_epoch()
    assert smoothing.active and smoothing.seen.sum() == 4
    own = features[ages == 21].mean(dim=0).double()
    assert torch.allclose(smoothing.running_mean[21], own)
    calibrated = smoothing.calibrate(features, ages)
    middle = calibrated[ages == 21].mean(dim=0)
    assert torch.all(middle < own.float() - 1) and torch.all(middle > 0.5)  # moved toward 0, not to it
    # age 60 has no seen neighbour within the kernel: its faces keep their features (ages never seen lend nothing)
    torch.testing.assert_close(calibrated[ages == 60], features[ages == 60], atol=1e-5, rtol=0)
    # an age no face had is left alone
    lonely = torch.ones(2, 3)
    assert torch.equal(smoothing.calibrate(lonely, torch.tensor([40.0, 40.0])), lonely)


def test_the_calibration_carries_gradients_and_each_epoch_moves_the_running_statistics_by_the_momentum():
    smoothing = FeatureSmoothing(dim=2, sigma=1.0, momentum=0.9)
    features, ages = faces_of_ages({30: 1.0, 31: 1.0}, dim=2)
    smoothing.gather(features, ages)
    smoothing.end_epoch()
    first = smoothing.running_mean[30].clone()
    shifted = features + 10.0
    smoothing.gather(shifted, ages)
    smoothing.end_epoch()
    torch.testing.assert_close(smoothing.running_mean[30], first + 0.1 * 10.0)
    leaf = features.clone().requires_grad_(True)
    smoothing.calibrate(leaf, ages).sum().backward()
    assert leaf.grad is not None and torch.all(leaf.grad > 0)


def test_the_state_round_trips_and_a_checkpoint_taken_before_the_fold_is_folded_on_loading():
    smoothing = FeatureSmoothing(dim=3)
    features, ages = faces_of_ages({20: 0.0, 21: 4.0})
    smoothing.gather(features, ages)
    pending = smoothing.state_dict()  # as at validation: the epoch's sums not yet folded
    smoothing.end_epoch()
    restored = FeatureSmoothing(dim=3)
    restored.load_state_dict(pending)
    assert restored.epochs == smoothing.epochs == 1
    torch.testing.assert_close(restored.running_mean, smoothing.running_mean)
    torch.testing.assert_close(restored.calibrate(features, ages), smoothing.calibrate(features, ages))


def test_bad_settings_are_refused():
    with pytest.raises(FaceageError, match="fds_sigma"):
        FeatureSmoothing(dim=3, sigma=0.0)
    with pytest.raises(FaceageError, match="fds_momentum"):
        FeatureSmoothing(dim=3, momentum=1.0)
