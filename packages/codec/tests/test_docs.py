"""The Python examples in docs/packages/codec.md and the README run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "packages" / "codec.md"
README = ROOT / "packages" / "codec" / "README.md"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.skipif(not README.exists(), reason="the README is not shipped with the wheel")
def test_readme_example_runs():
    exec(compile(_blocks(README)[0], str(README), "exec"), {})


@pytest.mark.slow
@pytest.mark.skipif(not DOC.exists(), reason="docs are not shipped with the wheel")
def test_doc_examples_run(tmp_path):
    quick, training = _blocks(DOC)[:2]
    exec(compile(quick, str(DOC), "exec"), {})
    code = training.replace("/tmp/codec-run", str(tmp_path / "codec-run"))
    namespace = {"SoundStream": None, "SoundStreamConfig": None}
    from cadence.codec import SoundStream, SoundStreamConfig

    namespace.update(SoundStream=SoundStream, SoundStreamConfig=SoundStreamConfig)
    exec(compile(code, str(DOC), "exec"), namespace)
    assert (tmp_path / "codec-run" / "release" / "model.safetensors").exists()
