"""Age assurance and the study's use cases on top of ``AgeEstimator``: screening (Challenge-N), calibration of the
challenge age from measured rates, the apparent-age gap, and photo recency. The decisions are numpy only; the
workflows of the commands (:func:`check_photos`, :func:`judged_face`, :func:`calibrate_model`) load the estimator
or run an evaluation when called, so importing this module stays light.

Every decision uses the model's *measured* error: the challenge age comes from the rate of minors passed on a
validation split, and the gap and recency verdicts from the distribution of signed errors (estimate − true age) per
age band, shipped with the model in ``calibration.json`` (written by ``faceage calibrate``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceage.errors import FaceageError
from faceage.metrics import age_bands, band_label, bootstrap_interval, in_band
from faceage.weights import calibration_path  # noqa: F401 (re-exported: where a model's calibration lives)

if TYPE_CHECKING:
    from faceage.infer.estimator import Face

OUTCOMES = ("pass", "refer", "no_face", "multiple_faces")
MULTIPLE_FACES = ("refer", "largest")
MINOR_YEARS = 5  # "minors" in calibration: the five years below the minimum age (13-17 for 18), who try to pass
QUANTILES = (0.01, 0.05, 0.1, 0.9, 0.95, 0.99)
MAX_HUMAN_AGE = 130


def check_age(value: float, name: str) -> float:
    """A stated age that a person can have, or a clear error."""
    if value is None or not np.isfinite(value) or value < 0 or value > MAX_HUMAN_AGE:
        raise FaceageError(f"{name} must be between 0 and {MAX_HUMAN_AGE} years, got {value}")
    return float(value)


# ------------------------------------------------------------------------------------------------------ screening


@dataclass(frozen=True)
class Policy:
    """Ask for ID from anyone estimated under ``challenge`` years (retail "Challenge 25" for a minimum age of 18)."""

    min_age: float = 18
    challenge: float = 25
    multiple_faces: str = "refer"  # refer: one person at a time; largest: judge the largest face

    def __post_init__(self):
        check_age(self.min_age, "the minimum age")
        check_age(self.challenge, "the challenge age")
        if self.challenge < self.min_age:
            raise FaceageError(f"the challenge age ({self.challenge}) must not be below the minimum age "
                               f"({self.min_age}): it is the buffer above it")  # fmt: skip
        if self.multiple_faces not in MULTIPLE_FACES:
            raise FaceageError(f"multiple-faces policy must be one of {', '.join(MULTIPLE_FACES)}, "
                               f"got '{self.multiple_faces}'")  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    outcome: str  # pass / refer / no_face / multiple_faces
    reason: str
    faces: int
    age: float | None = None
    age_low: float | None = None
    age_high: float | None = None
    policy: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("age", "age_low", "age_high"):
            out[key] = None if out[key] is None else round(out[key], 1)
        return out


def decide(faces: list[Face], policy: Policy) -> CheckResult:
    """The outcome for one photo: pass when the judged face is estimated at or above the challenge age."""
    common = {"faces": len(faces), "policy": asdict(policy)}
    if not faces:
        return CheckResult("no_face", "no face found: take the photo again, face the camera, or check ID", **common)
    if len(faces) > 1 and policy.multiple_faces == "refer":
        return CheckResult("multiple_faces", f"{len(faces)} faces in the photo: one person at a time, or check ID",
                           **common)  # fmt: skip
    from faceage.detect import select_face  # ONNX and OpenCV: not loaded for the --help text

    face = select_face(faces, "largest")
    estimate = {"age": face.age, "age_low": face.age_low, "age_high": face.age_high}
    if face.age >= policy.challenge:
        return CheckResult("pass", f"estimated {face.age:.1f}, at or above the challenge age {policy.challenge:g}",
                           **estimate, **common)  # fmt: skip
    return CheckResult("refer", f"estimated {face.age:.1f}, under the challenge age {policy.challenge:g}: ask for ID",
                       **estimate, **common)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- calibration


def _minors(truth: np.ndarray, min_age: float) -> np.ndarray:
    return (truth >= min_age - MINOR_YEARS) & (truth < min_age)


def screening_rates(truth: np.ndarray, estimate: np.ndarray, min_age: float, challenge: float,
                    n_resamples: int = 0, seed: int = 0) -> dict:  # fmt: skip
    """Minors (the MINOR_YEARS below ``min_age``) estimated at or above the challenge age, and adults (``min_age`` or
    older) estimated under it; with ``n_resamples``, also their 95% bootstrap intervals (``*_ci``)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    minors, adults = _minors(truth, min_age), truth >= min_age
    rates = {
        "challenge": float(challenge),
        "minors_passed": float((estimate[minors] >= challenge).mean()) if minors.any() else None,
        "adults_referred": float((estimate[adults] < challenge).mean()) if adults.any() else None,
        "n_minors": int(minors.sum()),
        "n_adults": int(adults.sum()),
    }
    if n_resamples:
        rates["minors_passed_ci"] = bootstrap_interval(lambda e: (e >= challenge).mean(), estimate[minors],
                                                       n_resamples=n_resamples, seed=seed)  # fmt: skip
        rates["adults_referred_ci"] = bootstrap_interval(lambda e: (e < challenge).mean(), estimate[adults],
                                                         n_resamples=n_resamples, seed=seed)  # fmt: skip
    return rates


def challenge_candidates(min_age: float) -> np.ndarray:
    return np.arange(min_age, min_age + 35.5, 0.5)


def calibrate(truth: np.ndarray, estimate: np.ndarray, min_age: float, max_minor_pass: float,
              n_resamples: int = 1000, seed: int = 0) -> dict:  # fmt: skip
    """The lowest challenge age (in half years from ``min_age``) whose measured share of minors passed is at most
    ``max_minor_pass``, with both rates at that age and their 95% bootstrap intervals."""
    check_age(min_age, "the minimum age")
    if not 0 <= max_minor_pass < 1:
        raise FaceageError(f"--max-minor-pass is a share between 0 and 1 (e.g. 0.01 for 1%), got {max_minor_pass}")
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    minors = _minors(truth, min_age)
    if minors.sum() < 20 or (truth >= min_age).sum() < 20:
        raise FaceageError(
            f"calibration needs at least 20 people aged {min_age - MINOR_YEARS:g}-{min_age - 1:g} and 20 aged "
            f"{min_age:g}+ in the data (found {int(minors.sum())} and {int((truth >= min_age).sum())})"
        )
    for challenge in challenge_candidates(min_age):
        rates = screening_rates(truth, estimate, min_age, challenge)
        if rates["minors_passed"] <= max_minor_pass:
            break
    else:
        raise FaceageError(f"no challenge age up to {challenge:g} keeps the minors passed at or under "
                           f"{max_minor_pass:.1%}; this model cannot screen for {min_age:g} at that rate")  # fmt: skip
    rates = screening_rates(truth, estimate, min_age, challenge, n_resamples=n_resamples, seed=seed)
    rates["min_age"], rates["max_minor_pass"] = float(min_age), max_minor_pass
    rates["minor_ages"] = f"{min_age - MINOR_YEARS:g}-{min_age - 1:g}"
    return rates


def band_error_quantiles(truth: np.ndarray, estimate: np.ndarray, by: str = "truth") -> list[dict]:
    """Per age band (of the true age, or ``by="estimate"`` of the estimated age): n, MAE and quantiles of the signed
    error (estimate − truth)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    key = truth if by == "truth" else estimate
    rows = []
    for low, high, mask in age_bands(key):
        error = estimate[mask] - truth[mask]
        row = {"band": band_label(low, high), "low": low, "high": high, "n": int(mask.sum())}
        if mask.sum() >= 10:
            row["mae"] = float(np.abs(error).mean())
            row["quantiles"] = {f"{q:g}": float(np.quantile(error, q)) for q in QUANTILES}
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Calibration:
    """Measured screening defaults and error distributions of one model (``calibration.json`` beside it)."""

    model: str
    source: str
    screening: dict[str, dict]  # min age ("18") → calibrate() result
    bands: list[dict]  # band_error_quantiles() by true age (for the gap: the stated age is the truth)
    bands_by_estimate: list[dict]  # by estimated age (for recency: the claim is what is tested)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        path = Path(path)
        if not path.is_file():
            raise FaceageError(f"{path}: no calibration file; make one with 'faceage calibrate MODEL --data DATA_DIR'")
        try:
            raw = json.loads(path.read_text())
            return cls(raw["model"], raw["source"], raw["screening"], raw["bands"], raw["bands_by_estimate"])
        except (json.JSONDecodeError, KeyError) as exc:
            raise FaceageError(f"{path}: not a faceage calibration file ({exc})") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def challenge_for(self, min_age: float, how_to_choose: str = "pass --challenge") -> dict:
        check_age(min_age, "the minimum age")
        key = f"{min_age:g}"
        if key not in self.screening or float(key) != float(min_age):  # 18.0000001 is not 18
            raise FaceageError(
                f"no calibrated challenge age for a minimum age of {min_age:g} (calibrated: "
                f"{', '.join(self.screening) or 'none'}); {how_to_choose}, or calibrate the model for it ('faceage "
                f"calibrate ... --min-age {min_age:g}')"
            )
        return self.screening[key]

    def band_for(self, age: float, by: str = "truth") -> dict:
        for row in self.bands if by == "truth" else self.bands_by_estimate:
            if in_band(age, row["low"], row["high"]):
                if "quantiles" not in row:
                    raise FaceageError(f"too few calibration faces aged {row['band']} to judge this ({row['n']})")
                return row
        raise FaceageError(f"no age band holds {age}")


# -------------------------------------------------------------------------------------------------- gap, recency


@dataclass(frozen=True)
class GapResult:
    stated_age: float
    age: float
    age_low: float
    age_high: float
    gap: float  # apparent − stated
    gap_low: float
    gap_high: float
    typical_low: float  # the model's 80% range of errors for people of the stated age's band
    typical_high: float
    band: str
    notable: bool
    verdict: str

    def to_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def apparent_age_gap(face: Face, stated_age: float, calibration: Calibration) -> GapResult:
    """Apparent minus stated age; notable only when outside the 80% range of the model's own errors for that band."""
    stated = check_age(stated_age, "the stated age")
    band = calibration.band_for(stated)
    low, high = band["quantiles"]["0.1"], band["quantiles"]["0.9"]
    gap = face.age - stated
    notable = gap < low or gap > high
    if not notable:
        verdict = (f"a gap of {gap:+.1f} years is within the model's usual error for people aged {band['band']} "
                   f"({low:+.1f} to {high:+.1f}): no finding")  # fmt: skip
    else:
        looks = "older" if gap > 0 else "younger"
        verdict = (f"looks {abs(gap):.1f} years {looks} than stated, beyond the model's usual error for people aged "
                   f"{band['band']} ({low:+.1f} to {high:+.1f})")  # fmt: skip
    return GapResult(stated, face.age, face.age_low, face.age_high, gap, face.age_low - stated, face.age_high - stated,
                     low, high, band["band"], notable, verdict)  # fmt: skip


@dataclass(frozen=True)
class RecencyResult:
    claimed_age: float
    expected_age: float  # the age the person had when the photo was taken, by the claim
    age: float
    age_low: float
    age_high: float
    difference: float  # estimate − expected
    band: str
    outcome: str  # consistent / inconsistent / uncertain
    reason: str

    def to_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def photo_recency(face: Face, claimed_age: float, calibration: Calibration, photo_year: int | None = None,
                  current_year: int | None = None) -> RecencyResult:  # fmt: skip
    """Is the face consistent with the claimed age (now, or in ``photo_year``)? Judged against the model's signed errors
    for the estimated age's band: inside its 80% range → consistent; outside its 98% range → inconsistent; between
    → uncertain."""
    claimed = check_age(claimed_age, "the claimed age")
    expected = claimed
    if photo_year is not None:
        from datetime import date

        now = current_year or date.today().year
        if photo_year > now or photo_year < 1850:
            raise FaceageError(f"the photo year must be between 1850 and {now}, got {photo_year}")
        expected = claimed - (now - photo_year)
        if expected < 0:
            raise FaceageError(f"someone aged {claimed:g} now was not born in {photo_year}")
    band = calibration.band_for(face.age, by="estimate")
    q = band["quantiles"]
    difference = face.age - expected
    # the estimate errs by e = estimate − truth; the claim is plausible when the implied error is usual for this band
    if q["0.1"] <= difference <= q["0.9"]:
        outcome, why = "consistent", "within the model's usual error (80% range)"
    elif difference < q["0.01"] or difference > q["0.99"]:
        outcome, why = "inconsistent", "beyond 98% of the model's errors"
    else:
        outcome, why = "uncertain", "between the model's usual and its rare errors"
    reason = (f"estimated {face.age:.1f} vs {expected:g} by the claim ({difference:+.1f} years): {why} for faces "
              f"estimated in the {band['band']} band ({q['0.1']:+.1f} to {q['0.9']:+.1f} for 80%, {q['0.01']:+.1f} "
              f"to {q['0.99']:+.1f} for 98%)")  # fmt: skip
    return RecencyResult(claimed, float(expected), face.age, face.age_low, face.age_high, difference, band["band"],
                         outcome, reason)  # fmt: skip


def build_calibration(model: str, source: str, truth: np.ndarray, estimate: np.ndarray, min_ages, max_minor_pass: float,
                      seed: int = 0) -> Calibration:  # fmt: skip
    return Calibration(
        model=model,
        source=source,
        screening={f"{m:g}": calibrate(truth, estimate, m, max_minor_pass, seed=seed) for m in min_ages},
        bands=band_error_quantiles(truth, estimate, by="truth"),
        bands_by_estimate=band_error_quantiles(truth, estimate, by="estimate"),
    )


def calibrate_model(model: Path, data_dir: Path, split: str, min_ages, max_minor_pass: float) -> Calibration:
    """``faceage calibrate``: the ONNX ``model`` measured on a split of the prepared ``data_dir`` (never the test
    split one reports), and the lowest challenge age per minimum age whose share of minors passed is at most
    ``max_minor_pass``."""
    import tempfile

    from faceage.evaluate.evaluation import evaluate, samples_from_data_dir

    with tempfile.TemporaryDirectory() as folder:
        result = evaluate(model, samples_from_data_dir(data_dir, split), Path(folder) / "eval", n_resamples=10)
    done = result.predictions[result.predictions["status"] == "ok"]
    metrics = result.metrics
    return build_calibration(metrics["model"]["name"], metrics["data"]["source"], done["age"].to_numpy(),
                             done["age_pred"].to_numpy(), min_ages, max_minor_pass)  # fmt: skip


def screening_help() -> str:
    """The shipped model's calibrated challenge ages and their measured rates, for ``faceage check --help``."""
    from faceage.weights import DEFAULT_MODEL

    try:
        screening = json.loads(calibration_path(DEFAULT_MODEL).read_text())["screening"]
    except (OSError, ValueError, KeyError):
        return "No calibrated defaults ship with this install: pass --challenge."
    parts = [
        f"min age {key}: challenge {r['challenge']:g} (measured on UTKFace val: {r['minors_passed']:.1%} of "
        f"{r['minor_ages']} year olds passed, {r['adults_referred']:.1%} of adults referred)"
        for key, r in screening.items()
    ]
    return "Calibrated defaults of the shipped model: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class CheckRun:
    """``faceage check`` over many photos: each photo's decision (as :meth:`Decision.to_dict`, or an ``error``
    outcome for a photo that could not be read), the challenge age used, and how many could not be read."""

    results: list[tuple[str, dict]]
    challenge: float
    unreadable: int


def check_photos(photos: list[str], min_age: float, challenge: float | None, multiple_faces: str,
                 model: str | Path | None = None) -> CheckRun:  # fmt: skip
    """Decide each photo with the policy (the challenge age defaults to the model's calibrated one for ``min_age``);
    a photo that cannot be read is an ``error`` result and the run goes on."""
    from faceage.errors import ImageError
    from faceage.infer.estimator import AgeEstimator

    estimator = AgeEstimator(model=model)
    if challenge is None:
        challenge = Calibration.load(calibration_path(estimator.model.path)).challenge_for(min_age)["challenge"]
    policy = Policy(min_age=min_age, challenge=challenge, multiple_faces=multiple_faces)
    results, unreadable = [], 0
    for photo in photos:
        try:
            result = decide(estimator.predict(photo), policy).to_dict()
        except ImageError as exc:
            unreadable += 1
            result = {"outcome": "error", "reason": str(exc), "faces": 0, "age": None, "age_low": None,
                      "age_high": None, "policy": None}  # fmt: skip
        results.append((str(photo), result))
    return CheckRun(results, challenge, unreadable)


def judged_face(photo: Path, model: str | Path | None, note=print) -> tuple[Face, Calibration]:
    """The largest face in ``photo`` and the calibration (measured errors) of the model that estimated it, for the
    one-photo judgements (gap, recency); ``note`` is told when there were several faces."""
    from faceage.detect import select_face
    from faceage.infer.estimator import AgeEstimator

    estimator = AgeEstimator(model=model)
    calibration = Calibration.load(calibration_path(estimator.model.path))
    faces = estimator.predict(photo)
    if not faces:
        raise FaceageError(f"{photo}: no face found; use a photo where the face is frontal, large and well lit")
    if len(faces) > 1:
        note(f"note: {len(faces)} faces in {photo}; judging the largest")
    return select_face(faces, "largest"), calibration
