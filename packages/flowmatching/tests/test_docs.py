"""The quick start in docs/packages/flowmatching.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "packages" / "flowmatching.md"


@pytest.mark.slow
@pytest.mark.skipif(not DOC.exists(), reason="docs are not shipped with the wheel")
def test_quick_start_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    code = blocks[0].replace('"/tmp/flow-quickstart"', repr(str(tmp_path / "quickstart")))
    exec(compile(code, str(DOC), "exec"), {})
    assert (tmp_path / "quickstart" / "release" / "model.safetensors").exists()


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.exists(), reason="the README is not shipped with the wheel")
def test_readme_example_runs():
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["out"].latents.shape == (2, 20, 8)
    assert namespace["prompted"].latents.shape == (2, 20, 8)
