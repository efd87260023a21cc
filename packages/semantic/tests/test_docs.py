"""The offline quick start in docs/packages/semantic.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "packages" / "semantic.md"


@pytest.mark.slow
@pytest.mark.skipif(not DOC.exists(), reason="docs are not shipped with the wheel")
def test_quick_start_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    code = blocks[0].replace("/tmp/mfcc-tokenizer", str(tmp_path / "mfcc-tokenizer"))
    exec(compile(code, str(DOC), "exec"), {})
    assert (tmp_path / "mfcc-tokenizer" / "model.safetensors").exists()
