"""The seeds' voice-conversion pipelines (CoIG, hierarchical): recipes, loading in place, refusals, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from cadence.codec import DacCodec, SpeechTokenizer, SpeechTokenizerAcoustic, SpeechTokenizerConfig
from cadence.core.nn import BackboneConfig
from cadence.pipeline import seed_recipes
from cadence.pipeline.cli import app
from cadence.pipeline.coig import CoIGConversion, check_coig
from cadence.pipeline.components import PipelineError, check_compatible, load_component
from cadence.pipeline.pipeline import PipelineSpec
from cadence.pipeline.synthesis import VoiceConversion
from cadence.semantic import HubertKMeansTokenizer
from cadence.soundstorm import SoundStorm, SoundStormConfig

runner = CliRunner()

# Tiny stand-ins for the recipes' settings: the same stages and code paths, seconds to train.
_BACKBONE = {"kind": "conformer", "dim": 32, "depth": 1, "heads": 2, "conv_kernel_size": 5}
_TRAINER = {"max_steps": 3, "batch_size": 4, "warmup_steps": 1, "save_every": 3, "log_every": 1}
_SOUNDSTORM = {"stage": "soundstorm", "model": {"backbone": _BACKBONE}, "trainer": _TRAINER}
_FLOW = {
    "stage": "flowmatching",
    "max_frames": 100,
    "model": {"flow": {"semantic_dim": 16, "backbone": {**_BACKBONE, "cond_dim": 32}}},
    "trainer": _TRAINER,
}
_TINY_JOBS = {
    "coig": {"soundstorm": _SOUNDSTORM, "flowmatching": _FLOW},
    "hierarchical": {
        "semantic_tokenizer": {
            "stage": "semantic_tokenizer",
            "architecture": "hubert",
            "model": {"frames": "floor"},
            "trainer": {"num_clusters": 16, "batch_size": 1000, "max_steps": 5},
        },
        "flowmatching": _FLOW,
    },
}
_TINY_SPEECHTOKENIZER = {
    "seanet": {
        "n_filters": 4,
        "latent_dim": 16,
        "strides": [2, 4, 5, 8],
        "lstm": 1,
        "true_skip": False,
    },
    "num_quantizers": 4,
    "codebook_size": 32,
    "semantic_dim": 16,
}
_TINY_DAC = {
    "encoder_hidden_size": 4,
    "downsampling_ratios": [2, 4, 5, 8],
    "decoder_hidden_size": 16,
    "n_codebooks": 2,
    "codebook_size": 32,
    "codebook_dim": 4,
}


def _build(name: str, root: Path, corpus: Path) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seed_recipes, "SEED_JOBS", _TINY_JOBS)
        patch.setattr(seed_recipes, "COIG_CODEC", _TINY_SPEECHTOKENIZER)
        patch.setattr(seed_recipes, "HIERARCHICAL_CODEC", _TINY_DAC)
        out = root / name
        result = runner.invoke(app, ["recipe", name, "--out", str(out), "--corpus", str(corpus)])
        assert result.exit_code == 0, result.output
    return out / "pipeline"


@pytest.fixture(scope="module")
def coig(tmp_path_factory, mini_corpus) -> Path:
    return _build("coig", tmp_path_factory.mktemp("seed"), mini_corpus)


@pytest.fixture(scope="module")
def hierarchical(tmp_path_factory, mini_corpus) -> Path:
    return _build("hierarchical", tmp_path_factory.mktemp("seed"), mini_corpus)


def _convert(pipeline: Path, valid_items, corpus: Path, out: Path, *extra: str):
    source, target = (corpus / valid_items[i]["path"] for i in (0, 3))  # two speakers
    args = ["convert", "--pipeline", pipeline, "--source", source, "--target-voice", target]
    return runner.invoke(app, [str(a) for a in (*args, "--out", out, "--steps", 2, *extra)])


def test_the_coig_recipe_lays_its_pipeline_out_as_the_released_one(coig):
    data = json.loads((coig / "pipeline.json").read_text())
    assert data["conversion"] == "coig"
    assert data["components"]["semantic_tokenizer"] == data["components"]["codec"] == "codec"
    assert (coig / "codec" / "SpeechTokenizer.pt").is_file()  # the official layout
    codec = SpeechTokenizer.from_official(coig / "codec")
    # the codebooks were fitted to the corpus, not left at zero: RVQ-1 uses many codes
    audio = torch.from_numpy(sf.read(coig / "prompts" / "prompt.flac", dtype="float32")[0])
    assert codec.encode(audio[None, None])[..., 0].unique().numel() > 4
    spec = PipelineSpec.read(coig)
    assert spec.load("soundstorm").config.num_quantizers == codec.num_quantizers - 1


@pytest.mark.parametrize("method", ["soundstorm", "flow"])
def test_coig_converts_from_the_cli_reproducibly(coig, valid_items, corpus, tmp_path, method):
    outputs = []
    for i in range(2):
        out = tmp_path / f"{method}-{i}.wav"
        result = _convert(coig, valid_items, corpus, out, "--method", method, "--seed", 3)
        assert result.exit_code == 0, result.output
        outputs.append(sf.read(out, dtype="float32")[0])
    source = sf.info(str(corpus / valid_items[0]["path"]))
    assert abs(len(outputs[0]) / 16000 - source.duration) < 0.05  # the source's length
    assert (outputs[0] == outputs[1]).all() and abs(outputs[0]).max() > 0


def test_coig_conversion_keeps_the_source_rvq1_and_takes_the_rest_from_the_model(coig, monkeypatch):
    vc = VoiceConversion.from_pretrained(coig, method="soundstorm")
    assert isinstance(vc, CoIGConversion)
    source = torch.randn(1, 8000) * 0.1
    target = torch.randn(1, 8000) * 0.1
    seen = {}
    decode = vc.acoustic.decode_with_semantic

    def spy(tokens, codes, lengths=None):
        seen.update(tokens=tokens, codes=codes)
        return decode(tokens, codes, lengths)

    monkeypatch.setattr(vc.acoustic, "decode_with_semantic", spy)
    vc.convert(source, target, sample_rate=16000, steps=2, seed=0)
    assert torch.equal(seen["tokens"], vc.tokenizer.tokenize(source[None]))
    assert seen["codes"].shape[-1] == vc.codec.num_quantizers - 1


def test_the_hierarchical_recipe_points_at_a_dac_folder_and_converts_with_flow(
    hierarchical, valid_items, corpus, tmp_path
):
    config = json.loads((hierarchical / "codec" / "config.json").read_text())
    assert config["model_type"] == "dac"  # a Hugging Face folder, as descript/dac_16khz
    spec = PipelineSpec.read(hierarchical)
    assert isinstance(spec.load("codec"), DacCodec)
    assert isinstance(spec.load("semantic_tokenizer"), HubertKMeansTokenizer)
    out = tmp_path / "vc.wav"
    result = _convert(hierarchical, valid_items, corpus, out, "--method", "flow")
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).duration > 1.0
    result = _convert(hierarchical, valid_items, corpus, tmp_path / "x.wav")
    assert result.exit_code != 0 and "no 'soundstorm' component" in result.output


def test_a_codec_folder_is_refused_where_it_cannot_serve(hierarchical, coig):
    with pytest.raises(PipelineError, match="holds a DacCodec, but the semantic_tokenizer must be"):
        load_component(hierarchical / "codec", "semantic_tokenizer")
    rvq1 = load_component(coig / "codec", "semantic_tokenizer")  # SpeechTokenizer's RVQ-1
    assert rvq1.codebook_size == 32 and rvq1.frame_rate == 50.0


def _tiny_codec(seed: int) -> SpeechTokenizer:
    torch.manual_seed(seed)
    model = SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()
    model.quantizer.codebooks.normal_()
    return model


def _soundstorm(levels: int, codec: SpeechTokenizer) -> SoundStorm:
    return SoundStorm(
        SoundStormConfig(
            num_quantizers=levels,
            codebook_size=codec.codebook_size,
            semantic_codebook_size=codec.codebook_size,
            frame_rate=codec.frame_rate,
            semantic_frame_rate=codec.frame_rate,
            backbone=BackboneConfig(kind="transformer", dim=16, depth=1, heads=2),
        )
    )


def test_check_compatible_accepts_rvq1_with_the_acoustic_levels_and_coig_refuses_mismatches():
    codec = _tiny_codec(0)
    acoustic, rvq1 = SpeechTokenizerAcoustic(codec), codec.semantic_tokenizer()
    check_compatible(codec=acoustic, tokenizer=rvq1, soundstorm=_soundstorm(3, codec))
    assert isinstance(
        check_coig(codec, rvq1, soundstorm=_soundstorm(3, codec)), SpeechTokenizerAcoustic
    )
    with pytest.raises(
        PipelineError, match=r"CoIG .*soundstorm models 4 x 64 codes, the codec makes 3 x 64"
    ):
        check_coig(codec, rvq1, soundstorm=_soundstorm(4, codec))
    with pytest.raises(PipelineError, match='add "conversion": "coig"'):
        check_compatible(codec=codec, tokenizer=rvq1, soundstorm=_soundstorm(3, codec))
    with pytest.raises(PipelineError, match="RVQ-1 of another SpeechTokenizer"):
        check_coig(codec, _tiny_codec(1).semantic_tokenizer(), soundstorm=_soundstorm(3, codec))
    with pytest.raises(PipelineError, match="codec's own RVQ-1, not a DacCodec"):
        check_coig(codec, DacCodec.tiny(), soundstorm=_soundstorm(3, codec))
    with pytest.raises(PipelineError, match="codec must be a SpeechTokenizer"):
        check_coig(DacCodec.tiny(), rvq1, soundstorm=_soundstorm(3, codec))


def test_an_unknown_conversion_kind_is_refused(coig, tmp_path):
    data = json.loads((coig / "pipeline.json").read_text())
    data["conversion"] = "cog"
    (tmp_path / "pipeline.json").write_text(json.dumps(data))
    with pytest.raises(PipelineError, match='unknown "conversion"'):
        VoiceConversion.from_pretrained(tmp_path)


def test_the_hubert_stage_names_its_keys(tmp_path, mini_corpus):
    from cadence.pipeline.training import TrainJob, run_job

    job = TrainJob(
        stage="semantic_tokenizer",
        architecture="hubert",
        corpus=str(mini_corpus),
        output=str(tmp_path / "tok"),
        model={"layer": 9},
    )
    with pytest.raises(PipelineError, match="takes checkpoint, output_layer, frames, config"):
        run_job(job)


def test_a_speechtokenizer_config_the_official_layout_cannot_hold_is_refused(tmp_path, mini_corpus):
    from cadence.pipeline.seed_codecs import write_speechtokenizer

    values = {
        **_TINY_SPEECHTOKENIZER,
        "seanet": {**_TINY_SPEECHTOKENIZER["seanet"], "true_skip": True},
    }
    with pytest.raises(PipelineError, match="official SpeechTokenizer layout cannot hold"):
        write_speechtokenizer(tmp_path / "st", values, mini_corpus / "train.jsonl")
    assert not (tmp_path / "st").exists()


def test_the_hubert_stage_fits_kmeans_on_a_given_hubert_checkpoint(tmp_path, mini_corpus):
    from cadence.pipeline.training import TrainJob, run_job
    from cadence.semantic import Hubert, HubertConfig

    torch.manual_seed(0)
    Hubert(HubertConfig.tiny(output_layer=3)).save_pretrained(tmp_path / "hubert")
    job = TrainJob(
        stage="semantic_tokenizer",
        architecture="hubert",
        corpus=str(mini_corpus),
        output=str(tmp_path / "tok"),
        model={"checkpoint": str(tmp_path / "hubert"), "output_layer": 2},
        trainer={"num_clusters": 8, "batch_size": 500, "max_steps": 3},
    )
    assert run_job(job) == {"num_clusters": 8.0}
    tokenizer = load_component(tmp_path / "tok", "semantic_tokenizer")
    assert isinstance(tokenizer, HubertKMeansTokenizer) and tokenizer.frame_rate == 50.0
    assert tokenizer.config.hubert.output_layer == 2 and tokenizer.config.frames == "floor"
    job = TrainJob(**{**job.__dict__, "model": {"checkpoint": str(tmp_path / "none")}})
    with pytest.raises(PipelineError, match="checkpoint: checkpoint not found"):
        run_job(job)
