"""The ONNX file a command measures: a shipped model's name, an exported file, or a training run exported for the
occasion (``with onnx_file(model) as path:``).

It sits above evaluation and training, as ``prepare.py`` and ``experiments.py`` do: evaluation measures files and
never exports, and ``faceage evaluate``, ``calibrate``, ``card`` and the benchmarks resolve a name once here. A run
folder or checkpoint needs the training extra (torch), imported only then.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceage.errors import FaceageError
from faceage.weights import model_path


def is_training_run(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".ckpt"


@contextmanager
def onnx_file(model: str | Path | None) -> Iterator[Path]:
    """The ONNX file behind ``model`` for the ``with`` block: the file itself, or the export of a training run (its
    best checkpoint) into a temporary folder removed afterwards."""
    path = model_path(model)
    if not path.exists():
        raise FaceageError(f"{path}: no such model; give an ONNX file, a run folder, a .ckpt, 'default' or 'fast'")
    if path.is_file() and path.suffix == ".onnx":
        yield path
        return
    if not is_training_run(path):
        raise FaceageError(f"{path}: not an ONNX model, a run folder or a .ckpt checkpoint")
    try:
        from faceage.train.export import export_onnx
    except ImportError:
        raise FaceageError(
            f"{path} is a training run; measuring it needs torch: pip install 'faceage[train]' "
            "(or export it elsewhere with 'faceage export' and give the ONNX file)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="faceage-export-") as folder:
        exported = Path(folder) / "model.onnx"
        export_onnx(path, exported)
        yield exported
