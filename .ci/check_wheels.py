"""Build every workspace member's wheel and install each, alone, into a fresh venv.

A member's wheel is installed together with the wheels of the workspace members it names
in its metadata (e.g. cadence-soundstorm needs cadence-core) and nothing else from the
workspace; third-party dependencies come from the package index. The venv then imports
the member and must not see any other Cadence package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_CHECK = """
import importlib, importlib.util, pkgutil, sys
name, allowed = sys.argv[1], set(sys.argv[2].split(","))
optional = set(filter(None, sys.argv[3].split(",")))
module = importlib.import_module(name)
# Import every submodule: a dependency used but not declared fails here. A submodule that
# wraps an optional extra may fail only for want of that extra's own packages.
count, skipped = 0, []
for info in pkgutil.walk_packages(module.__path__, name + "."):
    if not info.name.endswith("__main__"):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            missing = (err.name or "").split(".")[0].lower().replace("_", "-")
            if not any(extra == missing or extra.startswith(missing + "-") for extra in optional):
                raise
            skipped.append(f"{{info.name}} (extra: {{missing}})")
            continue
        count += 1
print("imported", name, "and", count, "submodules from", module.__path__[0],
      "; needs an extra:", ", ".join(skipped) if skipped else "none")
for other in {others}:
    if other not in allowed and importlib.util.find_spec(other) is not None:
        sys.exit(f"{{other}} is importable but was not installed on purpose")
"""


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def extras(wheel: Path) -> list[str]:
    """Third-party distributions the wheel declares only under an extra."""
    names = []
    for req in requirements(wheel):
        if "extra ==" in req:
            names.append(re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def main() -> int:
    dist = Path(tempfile.mkdtemp(prefix="cadence-dist-"))
    subprocess.run(
        ["uv", "build", "--all-packages", "--wheel", "-q", "-o", str(dist)], check=True, cwd=ROOT
    )
    wheels = {re.sub(r"_", "-", w.name.split("-")[0]): w for w in dist.glob("*.whl")}
    print("built:", ", ".join(sorted(wheels)))
    modules = {
        name: "cadence." + name.removeprefix("cadence-").replace("-", "_") for name in wheels
    }
    modules = {n: m.replace("cadence.app-", "cadence.apps.") for n, m in modules.items()}
    failures = []
    for name in sorted(wheels):
        needed = {name}
        frontier = [name]
        while frontier:  # workspace members this one depends on, transitively (no extras)
            for req in requirements(wheels[frontier.pop()]):
                if "extra ==" in req:
                    continue
                dep = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-")
                if dep in wheels and dep not in needed:
                    needed.add(dep)
                    frontier.append(dep)
        venv = Path(tempfile.mkdtemp(prefix="cadence-venv-"))
        run("uv", "venv", "-q", "--python", sys.executable, str(venv))
        python = str(venv / "bin" / "python")
        run(
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            python,
            *(str(wheels[n]) for n in sorted(needed)),
        )
        others = sorted(set(modules.values()))
        check = IMPORT_CHECK.format(others=others)
        allowed = ",".join(modules[n] for n in needed)
        try:
            print(
                f"{name}: installs with {sorted(needed)};",
                run(
                    python, "-c", check, modules[name], allowed, ",".join(extras(wheels[name]))
                ).strip(),
            )
        except subprocess.CalledProcessError as err:
            failures.append(name)
            print(f"{name}: FAILED\n{err.stdout}\n{err.stderr}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
