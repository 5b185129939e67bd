"""Knowledge distillation: an exported model (e.g. an ensemble) teaches a single network.

``faceage train DATA --model transfer-ema --teacher ensemble.onnx`` runs the teacher on every *augmented* training
batch (the same view the student sees, "consistent teaching"; Beyer et al. 2022, *Knowledge distillation: a good
teacher is patient and consistent*) and trains the student towards a mix of the teacher's age distribution and the
Gaussian soft label around the true age (weight ``Recipe.distill_weight`` on the teacher). The teacher runs on ONNX
Runtime, so any file from ``faceage export`` with an age-distribution head and the student's input preprocessing
can teach. It must not have seen the validation or test faces of DATA (train it on the same prepared folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceage.errors import FaceageError
from faceage.onnxfile import ModelFile, open_session
from faceage.preprocessing import Preprocessing


class Teacher:
    """Age-distribution probabilities of an exported model for normalised input batches (N×3×S×S)."""

    def __init__(self, path: Path, student_preprocessing: Preprocessing, threads: int | None = None):
        self.model = ModelFile.load(Path(path))
        meta = self.model.metadata
        if not meta.predicts_ages:
            raise FaceageError(
                f"{path} predicts {meta.head} only; a teacher must predict an age distribution (a model with "
                "an 'ages' head, e.g. an export of transfer-ema runs)"
            )
        teacher_preprocessing = meta.input_preprocessing
        if teacher_preprocessing != student_preprocessing:
            raise FaceageError(
                f"{path} reads faces as {teacher_preprocessing}, the student as {student_preprocessing}; "
                "a teacher must take the same input (choose a student model with the teacher's preprocessing)"
            )
        self.session = open_session(self.model.path, threads or torch.get_num_threads())

    @property
    def name(self) -> str:
        return self.model.metadata.name

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        probs = self.session.run(None, {"faces": inputs.numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(np.asarray(probs, dtype=np.float32))

    def collate(self, batch: list) -> tuple[torch.Tensor, ...]:
        """The default collation plus the teacher's probabilities as a fourth element."""
        x, ages, bins = torch.utils.data.default_collate(batch)
        return x, ages, bins, self(x)
