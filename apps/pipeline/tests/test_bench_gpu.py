"""bench/gpu/bench_gpu.py --tiny runs on the CPU and reports every part (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "gpu" / "bench_gpu.py"


def test_the_gpu_benchmark_smoke_runs_with_tiny_models(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(SCRIPT), "--tiny", "--repeats", "1", "--out", str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["tiny"] and results["soundstorm_generate_30s"]["frames"] == 150
    assert results["semantic_lm_decoding"]["median_ms_per_token"] > 0
    assert [r["model"] for r in results["training"]] == ["semantic_lm", "soundstorm"]
    assert all(
        r["tokens_per_s"] > 0 and r["mfu"] is None for r in results["training"]
    )  # no GPU peak
