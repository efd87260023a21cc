"""The README's Python examples run as written."""

import re
import shutil
from pathlib import Path

import pytest

from cadence.core.testing import toy_corpus_dir

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_examples():
    assert python_blocks()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    # The examples read "speech.flac": give them a real utterance of the toy corpus.
    first = sorted((toy_corpus_dir() / "audio").rglob("*.flac"))[0]
    shutil.copy(first, tmp_path / "speech.flac")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_blocks()[index], f"README.md[{index}]", "exec"), namespace)
    if "recon" in namespace:
        assert namespace["recon"].shape[:2] == (1, 1)
