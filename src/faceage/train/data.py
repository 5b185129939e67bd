"""Training data: aligned crops from a prepared DATA_DIR, cached at the model's input size, with augmentation.

The first use of a (input size, crop fraction) pair decodes every usable crop once and stores a uint8 array in
``DATA_DIR/cache/`` (temp file + rename); later runs load it in a second. Augmentation uses albumentations on the
uint8 images: flips, small affine, colour, blur, JPEG quality.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from faceage.bins import AgeBins
from faceage.data.prepared import PreparedData
from faceage.errors import FaceageError
from faceage.files import atomic_write_bytes
from faceage.preprocessing import Preprocessing

FIT_ON = ("train", "train+val")  # what a run learns from; "train+val" refits a settled recipe on more faces


def check_fit_on(fit_on: str) -> str:
    if fit_on not in FIT_ON:
        raise FaceageError(f"cannot fit on '{fit_on}': choose one of " + ", ".join(FIT_ON))
    return fit_on


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # N×S×S×3 uint8
    ages: np.ndarray  # N float32
    keys: list[str]


def augmentation(seed: int | None = None, grain: float = 0.0, erase: float = 0.0) -> A.Compose:
    """The training augmentation; ``seed`` makes its random draws repeatable (albumentations keeps its own RNG, which
    ``seed_everything`` does not reach); ``grain``: the share of faces given monochrome noise (film grain, a dark
    phone photo) of 2-10% of the range; ``erase``: the share of faces with one rectangle of 2-20% of their area
    replaced by random pixels (random erasing, Zhong et al. 2020: a face partly hidden, by a hand, a cup, a shadow)."""
    noise = [A.GaussNoise(std_range=(0.02, 0.1), per_channel=False, p=grain)] if grain > 0 else []
    erasing = [A.Erasing(scale=(0.02, 0.2), ratio=(0.3, 3.3), fill="random", p=erase)] if erase > 0 else []
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                border_mode=cv2.BORDER_REFLECT_101, p=0.8,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.ToGray(p=0.05),
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
            A.ImageCompression(quality_range=(50, 95), p=0.2),
            *noise,
            *erasing,
        ],
        seed=seed,
    )  # fmt: skip


def load_split_arrays(
    data: PreparedData | Path, preprocessing: Preprocessing, show_progress: bool = True
) -> dict[str, SplitArrays]:
    """Usable faces of every split as uint8 arrays at the model's input size (cached in DATA_DIR/cache)."""
    data = PreparedData.of(data)
    data_dir = data.root
    usable = data.usable.sort_values("key", kind="stable")
    if usable.empty:
        raise FaceageError(f"{data_dir}: no usable faces in the manifest; check {data_dir / 'quality.csv'}")
    fingerprint = hashlib.sha1("\n".join(usable["key"] + usable["sha1"]).encode()).hexdigest()[:12]
    p = preprocessing
    cache = data_dir / "cache" / f"faces-{p.input_size}px-crop{p.crop_fraction:.2f}-y{p.center_y:.2f}-{fingerprint}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            images = stored["images"]
    else:
        images = _decode_all(data_dir, usable["crop"].tolist(), preprocessing, show_progress)
        buffer = io.BytesIO()
        np.savez(buffer, images=images)
        atomic_write_bytes(cache, buffer.getvalue())
    out = {}
    for split in ("train", "val", "test"):
        mask = (usable["split"] == split).to_numpy()
        out[split] = SplitArrays(
            images[mask], usable["age"].to_numpy(dtype=np.float32)[mask], usable["key"][mask].tolist()
        )
    return out


def _decode_all(data_dir: Path, crops: list[str], preprocessing: Preprocessing, show_progress: bool) -> np.ndarray:
    from rich.progress import track

    size = preprocessing.input_size
    images = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    iterator = track(enumerate(crops), total=len(crops), description="caching faces", disable=not show_progress)
    for i, crop in iterator:
        bgr = cv2.imread(str(data_dir / crop), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FaceageError(f"{data_dir / crop} is missing or unreadable; re-run faceage prepare on {data_dir}")
        images[i] = preprocessing.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images


def _evenly(arrays: SplitArrays, limit: int) -> SplitArrays:
    """At most ``limit`` faces, evenly spread over the split (for quick runs and tests)."""
    if len(arrays.ages) <= limit:
        return arrays
    index = np.linspace(0, len(arrays.ages) - 1, limit).astype(int)
    return SplitArrays(arrays.images[index], arrays.ages[index], [arrays.keys[i] for i in index])


class FaceDataset(Dataset):
    def __init__(self, arrays: SplitArrays, preprocessing: Preprocessing, bins: AgeBins, augment: bool,
                 seed: int | None = None, grain: float = 0.0, erase: float = 0.0):  # fmt: skip
        self.arrays, self.bins = arrays, bins
        self.mean = np.asarray(preprocessing.mean, dtype=np.float32)
        self.std = np.asarray(preprocessing.std, dtype=np.float32)
        seed = torch.initial_seed() if seed is None else seed
        self.transform = augmentation(seed=seed % 2**32, grain=grain, erase=erase) if augment else None
        self.bin_index = np.asarray(bins.index(arrays.ages), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.arrays.ages)

    def __getitem__(self, i: int):
        image = self.arrays.images[i]
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        x = (image.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.tensor(self.arrays.ages[i]), int(self.bin_index[i])


def _seed_worker_augmentation(worker_id: int) -> None:
    """Each loader worker draws its own augmentations (a copied, identically seeded pipeline would repeat them)."""
    info = torch.utils.data.get_worker_info()
    if info is not None and info.dataset.transform is not None:
        info.dataset.transform.set_random_seed(info.seed % 2**32)


class FaceDataModule(L.LightningDataModule):
    def __init__(
        self,
        data: PreparedData | Path,
        preprocessing: Preprocessing,
        bins: AgeBins | None = None,
        batch_size: int = 64,
        augment: bool = True,
        num_workers: int = 0,
        limit: int | None = None,
        teacher: Callable | None = None,
        fit_on: str = "train",
        grain: float = 0.0,
        erase: float = 0.0,
    ):
        super().__init__()
        # the shares of augmented training faces given film grain and random erasing (augmentation())
        self.grain, self.erase = grain, erase
        self.fit_on = check_fit_on(fit_on)
        self.data, self.preprocessing = PreparedData.of(data), preprocessing
        self.data_dir = self.data.root
        self.bins = bins or self.data.bins
        self.batch_size, self.augment, self.num_workers, self.limit = batch_size, augment, num_workers, limit
        self.arrays: dict[str, SplitArrays] | None = None
        self.teacher = teacher  # adds its probabilities to each augmented training batch (faceage.train.teacher)

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is None:
            arrays = load_split_arrays(self.data, self.preprocessing)
            if self.limit:
                arrays = {split: _evenly(values, self.limit) for split, values in arrays.items()}
            for split, values in arrays.items():
                if len(values.ages) == 0:
                    raise FaceageError(f"{self.data_dir}: the {split} split is empty; prepare more data")
            if self.fit_on == "train+val":
                train, val = arrays["train"], arrays["val"]
                images, ages = np.concatenate([train.images, val.images]), np.concatenate([train.ages, val.ages])
                arrays["train"] = SplitArrays(images, ages, train.keys + val.keys)
            self.arrays = arrays

    def bin_representative_ages(self) -> np.ndarray:
        """Median training age of each bin: the age a bin classifier's answer stands for (for its MAE)."""
        self.setup()
        ages = self.arrays["train"].ages
        index = self.bins.index(ages)
        edges = list(self.bins.lower_edges) + [int(ages.max()) + 1]
        return np.array(
            [
                np.median(ages[index == b]) if np.any(index == b) else (edges[b] + edges[b + 1]) / 2
                for b in range(len(self.bins))
            ],
            dtype=np.float32,
        )

    def loader(self, split: str, augment: bool = False, shuffle: bool = False, taught: bool = False) -> DataLoader:
        self.setup()
        # under DDP every process has the same seed (so that the networks start equal): its augmentation is offset by
        # its rank, so that the processes do not draw the same transformations for their different faces
        rank = self.trainer.global_rank if self.trainer is not None else 0
        dataset = FaceDataset(
            self.arrays[split],
            self.preprocessing,
            self.bins,
            augment,
            torch.initial_seed() + rank,
            grain=self.grain,
            erase=self.erase,
        )
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**31) if shuffle else None
        collate = self.teacher.collate if taught and self.teacher is not None else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          generator=generator, persistent_workers=self.num_workers > 0,
                          worker_init_fn=_seed_worker_augmentation, collate_fn=collate)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", augment=self.augment, shuffle=True, taught=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
