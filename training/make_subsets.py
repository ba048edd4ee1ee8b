"""Select the small committed image subsets under data/ (seeded, files copied byte for byte).

    python -m training.make_subsets --datasets /work/shared/datasets --out data

* data/eval/gender/{female,male}/   400 UTKFace eval images: 40 per gender x race (5 races).
* data/eval/emotion/<class>/        up to 100 FER2013 test (PrivateTest) images per class.
* data/calib/gender/{female,male}/  256 UTKFace *train* images, 128 per gender (races spread evenly
  where the split has enough images; the few black female train images are topped up at random).
* data/calib/emotion/<class>/       512 FER2013 *train* images, 74 for the first class(es), 73 for the rest,
  none byte-identical to a FER2013 test or val image (FER2013 repeats some faces across splits).
Calibration images come from the training splits, evaluation images from the held-out splits;
the script checks that no file content appears in both.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from edgeport.converters.checksums import sha256_file

from .data import UTK_RACES, datasets_root, list_split, utk_meta

GENDER = ["female", "male"]
EMOTION = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SEED = 20240607


def _spread(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def select_gender(split: Path, per_gender: int, rng: random.Random, strict: bool = True) -> dict[str, list[Path]]:
    """per_gender images per gender, spread evenly over the 5 races.

    strict=False (calibration): a race with too few images gives all it has and the
    shortfall is filled at random from the remaining images of that gender.
    """
    paths, ys = list_split(split, GENDER)
    out: dict[str, list[Path]] = {g: [] for g in GENDER}
    for gi, g in enumerate(GENDER):
        chosen: list[Path] = []
        for race, n in zip(UTK_RACES, _spread(per_gender, len(UTK_RACES))):
            pool = [p for p, y in zip(paths, ys) if y == gi and (m := utk_meta(p)) and m.race == race]
            if len(pool) < n and strict:
                raise ValueError(f"only {len(pool)} {g}/{race} images in {split}, need {n}")
            chosen += rng.sample(pool, min(n, len(pool)))
        if len(chosen) < per_gender:
            rest = [p for p, y in zip(paths, ys) if y == gi and p not in set(chosen) and utk_meta(p)]
            chosen += rng.sample(rest, per_gender - len(chosen))
        out[g] = sorted(chosen)
    return out


def select_emotion(split: Path, per_class: list[int], rng: random.Random,
                   exclude: set[str] = frozenset()) -> dict[str, list[Path]]:
    """``per_class`` images per emotion, skipping files whose sha256 is in ``exclude``."""
    paths, ys = list_split(split, EMOTION)
    out = {}
    for ci, (c, n) in enumerate(zip(EMOTION, per_class)):
        pool = [p for p, y in zip(paths, ys) if y == ci]
        if exclude:
            pool = [p for p in pool if sha256_file(p) not in exclude]
        out[c] = sorted(rng.sample(pool, min(n, len(pool))))
    return out


def copy_selection(sel: dict[str, list[Path]], dest: Path) -> int:
    if dest.exists():
        shutil.rmtree(dest)
    n = 0
    for cls, files in sel.items():
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, dest / cls / f.name)
            n += 1
    return n


def _digests(sel: dict[str, list[Path]]) -> set[str]:
    return {sha256_file(f) for files in sel.values() for f in files}


def _split_digests(root: Path, splits: tuple[str, ...]) -> set[str]:
    """sha256 of every image in ``root/<split>`` for the given splits."""
    return {sha256_file(f) for split in splits for f in (root / split).rglob("*") if f.is_file()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="dataset root (default $EDGEPORT_DATASETS or /work/shared/datasets)")
    ap.add_argument("--out", default="data")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    root = datasets_root(args.datasets)
    out = Path(args.out)

    sels = {
        "eval/gender": select_gender(root / "utkface/eval", 200, random.Random(f"{args.seed}-eval-gender")),
        "eval/emotion": select_emotion(root / "fer2013/test", [100] * 7, random.Random(f"{args.seed}-eval-emotion")),
        # 128 per gender, not 32: the int8 precision search judges its budget on half of the
        # calibration images (converters/precision_search.py), and 32 held-out images put one
        # image at 3 points of agreement.
        "calib/gender": select_gender(root / "utkface/train", 128, random.Random(f"{args.seed}-calib-gender"), strict=False),
        # 512, not 64: the 7-class model's full-integer TFLite file lost 1.62 points of accuracy on
        # FER2013 test when calibrated on 64 images, 0.61 on 512 (see converters/tflite_int8.py).
        "calib/emotion": select_emotion(root / "fer2013/train", _spread(512, 7), random.Random(f"{args.seed}-calib-emotion"),
                                        exclude=_split_digests(root / "fer2013", ("test", "val"))),
    }
    for task in ("gender", "emotion"):
        overlap = _digests(sels[f"eval/{task}"]) & _digests(sels[f"calib/{task}"])
        if overlap:
            raise SystemExit(f"{task}: {len(overlap)} identical files in eval and calib subsets")
    for rel, sel in sels.items():
        n = copy_selection(sel, out / rel)
        counts = ", ".join(f"{k} {len(v)}" for k, v in sel.items())
        print(f"{out / rel}: {n} images ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
