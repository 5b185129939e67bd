"""UTKFace file names → labels.

Official layout: ``<age>_<gender>_<race>_<datetime>.jpg`` (in-the-wild parts) or ``….jpg.chip.jpg`` (aligned and
cropped release). age 0-116, gender 0 male / 1 female, race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others, datetime
``yyyymmddHHMMSSFFF``. Gender and race are kept for fairness audits only; faceage never predicts them.

A name that does not follow the layout is never guessed at: :func:`parse_name` raises :class:`BadName` with the
reason, and the caller records it in the data-quality report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from faceage.errors import FaceageError

MAX_AGE = 116
GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
EXTENSIONS = (".jpg.chip.jpg", ".jpg")
# The public release has datetimes of 16 to 18 digits; the labels are fine, so accept 14-18.
_DATETIME = re.compile(r"^\d{14,18}$")


class BadName(FaceageError):
    """A file name that does not follow the UTKFace layout."""


@dataclass(frozen=True)
class UTKLabels:
    age: int
    gender: int
    race: int
    datetime: str
    chip: bool  # True for the aligned-and-cropped release (".jpg.chip.jpg")


def parse_name(name: str) -> UTKLabels:
    """Labels from a UTKFace file name (a bare name or a path); raises :class:`BadName` with the reason."""
    base = PurePosixPath(name.replace("\\", "/")).name
    if base.endswith("jpg.chip.jpg") and not base.endswith(".jpg.chip.jpg"):
        raise BadName(f"'{base}' misses the dot in '.jpg.chip.jpg'")
    ext = next((e for e in EXTENSIONS if base.endswith(e)), None)
    if ext is None:
        raise BadName(f"'{base}' does not end in .jpg or .jpg.chip.jpg")
    stem = base[: -len(ext)]
    if stem != stem.strip():
        raise BadName(f"'{base}' has white space before the extension")
    fields = stem.split("_")
    if len(fields) != 4:
        raise BadName(
            f"'{base}' has {len(fields)} fields, expected 4 (age_gender_race_datetime)"
            + ("; a field is missing" if len(fields) < 4 else "")
        )
    age_s, gender_s, race_s, stamp = fields
    if not age_s.isdigit():
        raise BadName(f"'{base}': age '{age_s}' is not a whole number")
    if not gender_s.isdigit() or int(gender_s) not in GENDERS:
        raise BadName(f"'{base}': gender '{gender_s}' is not 0 or 1")
    if not race_s.isdigit() or int(race_s) not in RACES:
        raise BadName(f"'{base}': race '{race_s}' is not one of 0-4")
    if not _DATETIME.match(stamp):
        raise BadName(f"'{base}': datetime '{stamp}' is not a yyyymmddHHMMSSFFF time stamp")
    age = int(age_s)
    if age > MAX_AGE:
        raise BadName(f"'{base}': age {age} is above UTKFace's maximum of {MAX_AGE}")
    return UTKLabels(age=age, gender=int(gender_s), race=int(race_s), datetime=stamp, chip=ext == ".jpg.chip.jpg")
