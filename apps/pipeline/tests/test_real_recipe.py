"""The real recipe end to end at miniature scale on CPU: a LibriTTS-like layout, official-format
EnCodec and HuBERT laid out in a Hugging Face cache, tiny models through an override."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

from cadence.core.checkpoint import load_pretrained
from cadence.core.data import ShardReader
from cadence.pipeline.components import PipelineError
from cadence.pipeline.corpora.miniature import write_miniature
from cadence.pipeline.plan import count_parameters, plan_recipe
from cadence.pipeline.pretrained_components import resolve_pretrained
from cadence.pipeline.real_recipe import ORDER, REAL_JOBS, run_real_recipe

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one AcceleratorState per process: an earlier test's Trainer (float32)
    would make the real recipe's bf16 Trainer fail with "already initialized". A recipe
    process runs one precision; only the test session mixes them (accelerate's own tests
    reset the same way)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def _cached(cache: Path, repo_id: str, model) -> Path:
    """Lay out ``model`` as huggingface_hub caches ``repo_id`` (refs/main -> snapshots/<hash>)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    model.save_pretrained(repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return repo / "snapshots" / SNAPSHOT


def hf_cache(root: Path) -> Path:
    torch.manual_seed(0)
    encodec = transformers.EncodecModel(
        transformers.EncodecConfig(
            num_filters=4, hidden_size=16, codebook_size=32, num_lstm_layers=1
        )
    )
    with torch.no_grad():  # an untrained model's codebooks are zeros
        for layer in encodec.quantizer.layers:
            layer.codebook.embed.normal_()
    hubert = transformers.HubertModel(
        transformers.HubertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
        )
    )  # fmt: skip
    _cached(root, "facebook/encodec_24khz", encodec)
    _cached(root, "facebook/hubert-base-ls960", hubert)
    return root


def tiny_override(cache: Path, steps: int = 3) -> dict:
    trainer = {"max_steps": steps, "batch_size": 2, "gradient_accumulation_steps": 2,
               "warmup_steps": 1, "save_every": 2, "log_every": 1, "num_workers": 0,
               "ema_decay": 0.9}  # fmt: skip
    return {
        "components": {
            "encodec": {"cache_dir": str(cache), "bandwidth": 1.5},
            "hubert": {"cache_dir": str(cache), "output_layer": 2},
            "kmeans": {
                "num_clusters": 8,
                "batch_size": 256,
                "max_steps": 4,
                "init_size": 64,
                "max_frames": 1000,
                "save_every": 2,
            },
        },
        "semantic_lm": {
            "model": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "max_seq_len": 48},
            "trainer": trainer,
        },
        "soundstorm": {
            "model": {"backbone": {"dim": 32, "depth": 1, "heads": 2, "ff_mult": 2.0}},
            "trainer": trainer,
        },
        "aligner": {"model": {"dim": 16, "attention_dim": 8}, "trainer": trainer},
        "naturalspeech2": {
            "model": {"dim": 32, "heads": 2, "encoder_depth": 1, "prompt_encoder_depth": 1,
                      "predictor_depth": 1, "num_query_tokens": 4, "wavenet_channels": 32,
                      "wavenet_depth": 3, "diffusion_steps": 20},
            "trainer": trainer,
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return hf_cache(tmp_path_factory.mktemp("hub"))


def test_the_hugging_face_cache_resolves_offline_and_a_miss_says_how_to_fix_it(tmp_path, cache):
    path = resolve_pretrained("", "facebook/encodec_24khz", cache_dir=str(cache), what="encodec")
    assert path.name == SNAPSHOT and (path / "config.json").is_file()
    with pytest.raises(PipelineError, match=r"not in the Hugging Face cache.*hf download"):
        resolve_pretrained("", "facebook/nothing", cache_dir=str(cache), what="encodec")
    with pytest.raises(PipelineError, match="does not exist"):
        resolve_pretrained(str(tmp_path / "no.th"), "", what="encodec")


def test_the_job_files_state_the_papers_sizes(tmp_path):
    root = write_miniature("libritts", tmp_path / "LibriTTS", seconds=0.2)
    jobs = run_real_recipe("libritts", root, tmp_path / "out", write_only=True, num_processes=8)
    lm = tomllib.loads((jobs / "semantic_lm.toml").read_text())
    assert (lm["model"]["depth"], lm["model"]["dim"], lm["model"]["heads"]) == (12, 1024, 16)
    assert lm["trainer"]["mixed_precision"] == "bf16"
    assert (
        lm["trainer"]["gradient_accumulation_steps"]
        == REAL_JOBS["semantic_lm"]["trainer"]["gradient_accumulation_steps"]
    )
    storm = tomllib.loads((jobs / "soundstorm.toml").read_text())
    assert storm["model"]["backbone"] == {"kind": "conformer", "dim": 1024, "depth": 12,
                                          "heads": 16, "ff_mult": 4.0, "conv_kernel_size": 5}  # fmt: skip
    ns2 = tomllib.loads((jobs / "naturalspeech2.toml").read_text())
    sizes = ("dim", "heads", "encoder_depth", "prompt_encoder_depth", "wavenet_channels",
             "wavenet_depth", "attention_every", "num_query_tokens")  # fmt: skip
    assert tuple(ns2["model"][k] for k in sizes) == (512, 8, 6, 6, 512, 40, 3, 32)
    assert ns2["trainer"]["mixed_precision"] == "bf16" and ns2["model"]["voice"] == "en-us"
    out = (tmp_path / "out").resolve()
    assert Path(ns2["aligner"]) == Path("../pipeline/aligner")  # relative to the job file
    assert (jobs / ns2["shards"]).resolve() == out / "ns2_shards"
    aligner = tomllib.loads((jobs / "aligner.toml").read_text())
    assert aligner["stage"] == "aligner" and aligner["model"]["feature_dim"] == 80
    assert (jobs / aligner["codec"]).resolve() == out / "pipeline" / "codec"
    components = tomllib.loads((jobs / "components.toml").read_text())
    assert components["encodec"]["repo_id"] == "facebook/encodec_24khz"
    assert components["hubert"]["output_layer"] == 9


def test_the_real_recipe_runs_end_to_end_at_miniature_scale(tmp_path, cache):
    from cadence.naturalspeech2.espeak import espeak_available

    # without libespeak-ng the NaturalSpeech 2 steps cannot phonemize: run the rest, then skip
    espeak = espeak_available()
    only = ORDER if espeak else ORDER[: ORDER.index("phonemes")]
    root = write_miniature("libritts", tmp_path / "LibriTTS", seconds=0.6)
    out = tmp_path / "out"
    pipeline = run_real_recipe("libritts", root, out, override=tiny_override(cache), only=only)
    codec = load_pretrained(pipeline / "codec")
    tokenizer = load_pretrained(pipeline / "semantic_tokenizer")
    assert (codec.sample_rate, codec.frame_rate, codec.num_quantizers) == (24000, 75.0, 4)
    assert tokenizer.codebook_size == 8
    lm = load_pretrained(pipeline / "semantic_lm")
    storm = load_pretrained(pipeline / "soundstorm")
    assert lm.config.codebook_size == 8 and storm.config.num_quantizers == 4
    assert storm.config.frame_rate == 75.0 and storm.config.semantic_codebook_size == 8
    trained = ("semantic_lm", "soundstorm", "aligner", "naturalspeech2")
    for stage in trained if espeak else trained[:2]:
        checkpoints = sorted((out / "runs" / stage / "checkpoints").iterdir())
        assert checkpoints, stage  # resumable run state next to the release
        summary = json.loads((pipeline / stage / "training.json").read_text())
        assert summary["stage"] == stage
    shards = ShardReader(out / "shards" / "train")
    assert {"codes", "tokens"} <= set(shards.fields)
    assert shards.metadata["tokenizer_frame_rate"] == 50.0 and shards.metadata["frame_rate"] == 75.0
    # cadence plan builds the same models on the meta device: the same parameter counts
    sizes = {"num_quantizers": 4, "codebook_size": 32, "frame_rate": 75.0,
             "semantic_frame_rate": tokenizer.frame_rate, "latent_dim": codec.latent_dim}  # fmt: skip
    models = {"semantic_lm": lm, "soundstorm": storm}
    if espeak:
        models["aligner"] = _check_naturalspeech2(pipeline, out, codec)
        models["naturalspeech2"] = load_pretrained(pipeline / "naturalspeech2")
        sizes["num_phonemes"] = len(models["naturalspeech2"].config.phonemes)
    plans = {p.stage: p for p in plan_recipe("libritts", override=tiny_override(cache),
                                             sizes=sizes, include_frozen=False)}  # fmt: skip
    for stage, model in models.items():
        assert plans[stage].parameters == count_parameters(model), stage
    # a rerun finds every step done and changes nothing
    release = pipeline / ("naturalspeech2" if espeak else "soundstorm") / "model.safetensors"
    before = release.stat().st_mtime_ns
    run_real_recipe("libritts", root, out, override=tiny_override(cache), only=only)
    assert release.stat().st_mtime_ns == before
    if not espeak:
        pytest.skip(
            "libespeak-ng not found: the phonemes, aligner and naturalspeech2 steps did not run"
        )


@pytest.mark.parametrize("name, folder", [("librispeech", "LibriSpeech"), ("ljspeech", "LJSpeech-1.1"), ("vctk", "VCTK-Corpus")])  # fmt: skip
def test_the_other_real_recipes_run_from_their_layouts_to_trained_models(tmp_path, cache, name, folder):  # fmt: skip
    # the chain is libritts' (tested whole above); what differs is the layout read and split
    root = write_miniature(name, tmp_path / folder, seconds=0.6)
    out = tmp_path / "out"
    only = ORDER[: ORDER.index("phonemes")]  # to the trained semantic LM and SoundStorm
    pipeline = run_real_recipe(name, root, out, override=tiny_override(cache), only=only)
    summary = json.loads((out / "corpus" / "corpus.json").read_text())
    assert summary["train"]["utterances"] + summary["valid"]["utterances"] == 12
    assert len(ShardReader(out / "shards" / "train")) == summary["train"]["utterances"]
    for stage in ("semantic_lm", "soundstorm"):
        assert json.loads((pipeline / stage / "training.json").read_text())["stage"] == stage
    storm = load_pretrained(pipeline / "soundstorm")
    assert storm.config.num_quantizers == 4 and storm.config.frame_rate == 75.0


def _check_naturalspeech2(pipeline: Path, out: Path, codec):
    """The aligner's durations in NaturalSpeech 2's shards, and the released NS2 speaks."""
    aligner = load_pretrained(pipeline / "aligner")
    ns2 = load_pretrained(pipeline / "naturalspeech2")
    rows = [json.loads(line) for line in (out / "corpus" / "train.jsonl").read_text().splitlines()]
    assert all(row["phonemes"] and row["phonemes"][0] != "_" for row in rows)
    # one vocabulary: the aligner's ids are the model's
    assert aligner.config.phonemes == ns2.config.phonemes
    assert (ns2.config.latent_dim, ns2.config.frame_rate) == (codec.latent_dim, 75.0)
    assert ns2.config.voice == "en-us" and ns2.config.dim == 32
    shards = ShardReader(out / "ns2_shards" / "train")
    assert shards.metadata["durations"] == "aligner" and len(shards) == len(rows)
    for i in range(len(shards)):
        item = shards[i]
        assert int(item["durations"].sum()) == item["latents"].shape[0]  # MAS covers every frame
        assert int(item["durations"].min()) >= 1
    prompt = torch.as_tensor(shards[0]["latents"]).float()[:20]
    generator = torch.Generator().manual_seed(0)
    latents = ns2.synthesize("A lazy dog.", prompt, steps=2, generator=generator)
    assert latents.ndim == 3 and latents.shape[0] == 1 and latents.shape[-1] == codec.latent_dim
    audio = codec.decode_latents(latents)
    assert audio.shape[:2] == (1, 1) and audio.shape[-1] >= latents.shape[1] * codec.hop_length
    assert torch.isfinite(audio).all() and audio.abs().max() > 0
    return aligner


def test_phonemes_without_espeak_name_the_install_and_leave_the_manifest(tmp_path, monkeypatch):
    from cadence.naturalspeech2 import espeak
    from cadence.pipeline.real_phonemes import phonemize_manifests

    for split in ("train", "valid"):
        (tmp_path / f"{split}.jsonl").write_text('{"id": "a", "path": "a.wav", "text": "Hi."}\n')
    before = (tmp_path / "train.jsonl").read_bytes()

    def missing():
        raise espeak.EspeakNotFoundError("libespeak-ng not found")

    monkeypatch.setattr(espeak, "_engine", missing)
    with pytest.raises(PipelineError, match=r"apt-get install espeak-ng"):
        phonemize_manifests(tmp_path)
    assert (tmp_path / "train.jsonl").read_bytes() == before


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, cache) -> tuple[Path, Path]:
    """A miniature LibriSpeech run up to its shards: (corpus, recipe folder)."""
    root = tmp_path_factory.mktemp("real")
    corpus = write_miniature("librispeech", root / "LibriSpeech", seconds=0.6)
    run_real_recipe("librispeech", corpus, root / "out", override=tiny_override(cache),
                    only=("codec", "semantic_tokenizer", "tokenize"))  # fmt: skip
    return corpus, root / "out"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_recipe_stage_runs_on_two_processes(tokenized, cache, monkeypatch):
    corpus, out = tokenized
    # `--multi_gpu` with ACCELERATE_USE_CPU=1: torch.distributed over gloo on the CPU
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launch = ("--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no "
              f"--dynamo_backend no --main_process_port {_free_port()}")  # fmt: skip
    override = tiny_override(cache, steps=4)
    run_real_recipe("librispeech", corpus, out, override=override, only=("soundstorm",),
                    launch=launch, num_processes=2)  # fmt: skip
    summary = json.loads((out / "pipeline" / "soundstorm" / "training.json").read_text())
    assert summary["num_processes"] == 2
    checkpoint = out / "runs" / "soundstorm" / "checkpoints" / "step-00000004"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}
    assert load_pretrained(out / "pipeline" / "soundstorm").config.num_quantizers == 4


def test_a_stage_killed_mid_run_resumes_from_its_last_checkpoint(tokenized, cache, monkeypatch):
    from cadence.core.train import Trainer
    from cadence.pipeline.training import TrainJob, run_job

    corpus, out = tokenized
    override = tiny_override(cache, steps=60)
    jobs = run_real_recipe("librispeech", corpus, out, override=override, write_only=True)
    job_file = jobs / "semantic_lm.toml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "cadence.pipeline.cli",
        "train",
        "semantic_lm",
        "--config",
        str(job_file),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = out / "runs" / "semantic_lm" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints / "step-00000004").is_dir() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-stage: between checkpoints, no release yet
    process.wait()
    assert not (out / "pipeline" / "semantic_lm" / "model.safetensors").exists()
    started: list[int] = []
    real_load = Trainer.load_checkpoint

    def spy(self, checkpoint):
        path = real_load(self, checkpoint)
        started.append(self.global_step)
        return path

    monkeypatch.setattr(Trainer, "load_checkpoint", spy)
    run_job(TrainJob.from_toml(job_file))  # the same command again
    assert started and 4 <= started[0] < 60  # it went on from a checkpoint, not from step 0
    release = json.loads((out / "pipeline" / "semantic_lm" / "config.json").read_text())
    assert release["metadata"]["step"] == 60


def test_phonemes_on_worker_processes_match_one_process(tmp_path):
    from cadence.naturalspeech2 import phonemize
    from cadence.naturalspeech2.espeak import espeak_available
    from cadence.pipeline.real_phonemes import phonemize_manifests

    if not espeak_available():
        pytest.skip("libespeak-ng not found")
    texts = ["The quick brown fox.", "", "Seven bright stars shine.", "A lazy dog."]
    rows = [{"id": str(i), "path": f"{i}.wav", "text": t} for i, t in enumerate(texts)]
    rows[3]["phonemes"] = ["kept"]  # a row that has phonemes keeps them
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert phonemize_manifests(tmp_path, workers=2, splits=("train",)) == {"train": 3}
    written = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == ["0", "1", "2", "3"]  # in order
    assert written[0]["phonemes"] == phonemize(texts[0])[1:] and written[1]["phonemes"] == []
    assert written[3]["phonemes"] == ["kept"]
    assert phonemize_manifests(tmp_path, splits=("train",)) == {"train": 0}  # done: left alone
