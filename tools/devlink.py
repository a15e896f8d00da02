"""Make the installed ``workhive`` package point at this checkout (dev mode).

The wheel maps ``proto/workhive`` -> ``workhive``, ``coordinator`` ->
``workhive.coordinator`` and ``agent`` -> ``workhive.agent``; editable installs
cannot express that mapping, so after ``pip install .`` this script replaces
the installed files with symlinks into the checkout. Edits are then live, while
the dist-info (console script, version) stays the one pip installed.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINKS = {
    "__init__.py": ROOT / "proto" / "workhive" / "__init__.py",
    "py.typed": ROOT / "proto" / "workhive" / "py.typed",
    "v1": ROOT / "proto" / "workhive" / "v1",
    "coordinator": ROOT / "coordinator",
    "agent": ROOT / "agent",
}


def main() -> None:
    pkg = Path(sysconfig.get_paths()["purelib"]) / "workhive"
    if pkg.is_symlink():
        pkg.unlink()
    pkg.mkdir(exist_ok=True)
    for name, target in LINKS.items():
        dest = pkg / name
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        dest.symlink_to(target)
    print(f"linked {pkg} -> {ROOT}")


if __name__ == "__main__":
    main()
