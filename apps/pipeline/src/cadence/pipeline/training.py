"""One training job per trainable model, described by a TOML file (``cadence train <stage> --config``).

A job reads a corpus (a directory with ``train.jsonl`` / ``valid.jsonl``, the layout of
``cadence-toy-corpus``) or precomputed shards, trains with core's Trainer (or the codec's GAN
loop), and writes the release checkpoint (``config.json`` + ``model.safetensors``) to
``output``. Run files (resumable checkpoints) go to ``run_dir``. Every job runs the same on
one process or under ``accelerate launch``; only the main process writes the release.

```toml
stage = "soundstorm"
corpus = "tests/data/toy_speech"
shards = "runs/toy/shards"          # train/ and valid/ from `cadence tokenize`
output = "runs/toy/soundstorm"

[model]                             # fields of the model's config (sizes come from the shards)
backbone = { kind = "conformer", dim = 128, depth = 4, heads = 4 }

[train]                             # fields of the package's train config (losses, dropout, prompts)
cond_drop_prob = 0.1

[trainer]                           # fields of TrainerConfig (CodecTrainerConfig for the codec)
max_steps = 2000
batch_size = 16
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

import torch
from accelerate.utils import set_seed

from cadence.core.config import ConfigError, config_from_dict
from cadence.core.data import AudioDataset, ShardReader, precompute
from cadence.core.interfaces import Codec, LatentCodec
from cadence.core.io import write_bytes, write_json
from cadence.core.train import HISTORY_FILE, Trainer, TrainerConfig

from .components import PipelineError, load_component
from .pipeline import COMPONENTS

STAGES = COMPONENTS  # every component of a pipeline is trained by a stage of the same name
# the stages `cadence train` runs: the components', and the aligner, a training aid
# (NaturalSpeech 2's durations on a corpus without timings) that is no pipeline component
TRAIN_STAGES = (*STAGES, "aligner")
# The stages that can start from a trained release (``init_from``) instead of a new model.
INIT_STAGES = ("codec", "semantic_lm", "soundstorm", "flowmatching")


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """What one ``cadence train`` run does.

    Attributes:
        stage: one of :data:`TRAIN_STAGES`.
        corpus: a corpus directory (``train.jsonl``, ``valid.jsonl`` and the audio).
        output: the release checkpoint directory.
        run_dir: resumable run files (default ``<output>.run``).
        shards: token shards with ``train/`` and ``valid/`` (semantic_lm, soundstorm,
            flowmatching), written by :func:`tokenize_corpus`; for naturalspeech2, shards of
            :func:`~cadence.naturalspeech2.preprocess_corpus` (made in ``run_dir`` when absent).
        codec: the codec checkpoint (naturalspeech2 trains on its latents; the aligner's
            frames are the codec's).
        aligner: an aligner checkpoint (``cadence train aligner``): naturalspeech2 takes its
            durations from it instead of the corpus' espeak timings.
        crop_seconds: training crop of the codec (and k-means sample) audio.
        max_frames: training crop, in frames, of the flow matcher.
        speaker_chains: train the semantic LM on chains of one speaker's utterances (needs
            ``corpus`` for the speakers).
        architecture: which model a stage trains, where it has a choice: the codec
            (``"soundstream"``, default, or ``"istft"``: :class:`~cadence.codec.ISTFTCodec`) and
            the semantic tokenizer (``"mfcc"``, default, ``"phonetic"``: k-means over a CTC
            phoneme encoder, or ``"hubert"``: k-means over HuBERT, :mod:`.training_hubert`).
        init_from: a release checkpoint (``config.json`` + weights) the stage starts from
            instead of a new model, keeping its config (codec, semantic_lm, soundstorm,
            flowmatching): fine-tuning, or more steps on a shipped model. For the codec, with
            ``trainer.frozen_modules`` naming its encoder side, a run retrains the decoder alone
            and every code stays the same. A token model must fit the shards (same codec and
            semantic tokenizer), or the job is refused.
        model: overrides of the model config's fields.
        train: fields of the package's train config (``SoundStormTrainConfig``,
            ``NaturalSpeech2TrainConfig``, ``FlowMatchingTrainConfig``, ``AudioLMTrainConfig``):
            losses and their weights, prompt sampling, condition dropout.
        trainer: fields of the trainer config.
    """

    stage: str
    corpus: str | None = None
    output: str
    run_dir: str | None = None
    shards: str | None = None
    codec: str | None = None
    aligner: str | None = None
    crop_seconds: float = 1.0
    max_frames: int = 200
    speaker_chains: bool = False
    architecture: str | None = None
    init_from: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in TRAIN_STAGES:
            raise PipelineError(
                f"unknown stage {self.stage!r}; the stages are {', '.join(TRAIN_STAGES)}"
            )
        needs = {
            "corpus": (
                "codec",
                "semantic_tokenizer",
                "naturalspeech2",
                "phoneme_recognizer",
                "aligner",
            ),
            "shards": ("semantic_lm", "soundstorm", "flowmatching"),
            "codec": ("naturalspeech2", "aligner"),
        }
        for key, stages in needs.items():
            if self.stage in stages and getattr(self, key) is None:
                raise PipelineError(f"stage {self.stage!r} needs `{key} = ...` in its config")
        choices = {
            "codec": ("soundstream", "istft"),
            "semantic_tokenizer": ("mfcc", "phonetic", "hubert"),
        }
        if self.architecture is not None and self.architecture not in choices.get(self.stage, ()):
            known = ", ".join(choices.get(self.stage, ())) or "none (this stage has one model)"
            raise PipelineError(
                f"stage {self.stage!r} has no architecture {self.architecture!r}; choices: {known}"
            )
        if self.init_from is not None and (self.stage not in INIT_STAGES or self.model):
            raise PipelineError(
                "init_from starts a stage from a trained release, whose config it keeps: it "
                f"takes a stage among {', '.join(INIT_STAGES)} and no [model] (got stage "
                f"{self.stage!r}{', [model] ' + str(sorted(self.model)) if self.model else ''})"
            )
        if self.speaker_chains and self.corpus is None:
            raise PipelineError(
                "speaker_chains = true needs `corpus = ...` (its manifests name the speakers)"
            )

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path(f"{self.output}.run")

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> TrainJob:
        """Read a job file; ``overrides`` (e.g. ``stage`` from the command line) win."""
        path = Path(path)
        if not path.is_file():
            raise PipelineError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise PipelineError(f"{path} is not valid TOML: {err}") from err
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PipelineError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
        # Relative paths are relative to the config file, so a recipe directory can move.
        for key in ("corpus", "output", "run_dir", "shards", "codec", "aligner", "init_from"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((path.parent / data[key]).resolve())
        if "output" not in data or "stage" not in data:
            raise PipelineError(f"{path} needs `stage = ...` and `output = ...`")
        return cls(**data)


def _config(cls: type, values: dict[str, Any], what: str, **defaults: Any) -> Any:
    try:
        return config_from_dict(cls, {**defaults, **values})
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(f"[{what}] does not make a valid {cls.__name__}: {err}") from err


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _manifest(corpus: str | os.PathLike, split: str) -> Path:
    path = Path(corpus) / f"{split}.jsonl"
    if not path.is_file():
        raise PipelineError(
            f"{path} not found: a corpus is a directory with train.jsonl and valid.jsonl "
            "(make one with `cadence-toy-corpus DIR`)"
        )
    return path


def _open_shards(job: TrainJob, split: str) -> ShardReader:
    directory = Path(cast(str, job.shards)) / split
    if not (directory / "manifest.json").is_file():
        raise PipelineError(
            f"no shards in {directory}; write them first with `cadence tokenize` "
            "(train/ and valid/ under the shards directory)"
        )
    return ShardReader(directory)


def _write_summary(job: TrainJob, metrics: dict[str, float]) -> None:
    if _is_main():
        path = Path(job.output) / "training.json"
        summary = {
            "stage": job.stage,
            "num_processes": int(os.environ.get("WORLD_SIZE", "1")),
            "metrics": metrics,
            # a release that went on from another (the recipe's decoder stage looks for it)
            **({"init_from": job.init_from} if job.init_from is not None else {}),
        }
        write_json(path, summary)
        _ship_history(job)


def _ship_history(job: TrainJob) -> None:
    """Copy the run's training log (the trainer's ``history.jsonl``) next to the release, so a
    pipeline carries its training curves (``cadence eval --report`` draws them)."""
    logs = sorted(job.run_path.glob(f"**/{HISTORY_FILE}"), key=lambda p: len(p.parts))
    if logs:
        write_bytes(Path(job.output) / HISTORY_FILE, logs[0].read_bytes())


# ----------------------------------------------------------------------------- the stages


def _train_codec(job: TrainJob) -> dict[str, float]:
    from cadence.codec import (
        CodecTrainer,
        CodecTrainerConfig,
        ISTFTCodec,
        ISTFTCodecConfig,
        SoundStream,
        SoundStreamConfig,
    )

    model_class, config_class = {
        "soundstream": (SoundStream, SoundStreamConfig),
        "istft": (ISTFTCodec, ISTFTCodecConfig),
    }[job.architecture or "soundstream"]
    model = _start_model(job, model_class, lambda: _config(config_class, job.model, "model"), {})
    config = model.config
    trainer_config = _config(CodecTrainerConfig, job.trainer, "trainer")
    train = AudioDataset(
        _manifest(cast(str, job.corpus), "train"),
        sample_rate=config.sample_rate,
        crop_seconds=job.crop_seconds,
    )
    valid = AudioDataset(
        _manifest(cast(str, job.corpus), "valid"),
        sample_rate=config.sample_rate,
        crop_seconds=max(job.crop_seconds, 2.0),
    )
    trainer = CodecTrainer(model, train, trainer_config, output_dir=job.run_path, eval_data=valid)
    trainer.train(resume_from="latest")
    metrics = trainer.evaluate()
    if trainer.accelerator.is_main_process:
        trainer.save_pretrained(job.output)
    trainer.accelerator.wait_for_everyone()
    return {k: float(v) for k, v in metrics.items()}


def _train_semantic_tokenizer(job: TrainJob) -> dict[str, float]:
    if job.architecture == "phonetic":
        return _train_phonetic_tokenizer(job)
    if job.architecture == "hubert":
        from .training_hubert import train_hubert_tokenizer

        return train_hubert_tokenizer(job)
    from cadence.semantic import KMeansTrainConfig, MFCCFeatureConfig, MFCCKMeansTokenizer

    features = _config(MFCCFeatureConfig, job.model.get("features", {}), "model.features")
    train = _config(KMeansTrainConfig, job.trainer, "trainer")
    data = AudioDataset(
        _manifest(cast(str, job.corpus), "train"),
        sample_rate=features.sample_rate,
        crop_seconds=None,
    )
    tokenizer = MFCCKMeansTokenizer.fit(data, train, features=features, state_dir=job.run_path)
    if _is_main():
        tokenizer.save_pretrained(job.output)
    return {"num_clusters": float(tokenizer.codebook_size)}


def _train_phonetic_tokenizer(job: TrainJob) -> dict[str, float]:
    """CosyVoice-style supervised semantic tokens: k-means over a CTC phoneme encoder's layer.

    ``[model]``: ``layer`` (default 4) and ``encoder`` (fields of ``PhoneticEncoderConfig``,
    e.g. ``backbone``); ``[trainer]``: the encoder's CTC training (``TrainerConfig``);
    ``[train]``: the k-means (``KMeansTrainConfig``, ``num_clusters`` the vocabulary).
    """
    from cadence.semantic import (
        KMeansTrainConfig,
        PhoneticEncoderConfig,
        PhoneticKMeansTokenizer,
        train_phonetic_encoder,
    )

    corpus = cast(str, job.corpus)
    model = dict(job.model)
    layer = int(model.pop("layer", 4))
    unknown = sorted(set(model) - {"encoder"})
    if unknown:
        raise PipelineError(
            f"[model] of the phonetic tokenizer takes layer and encoder, not {unknown}"
        )
    manifests = [_manifest(corpus, "train"), _manifest(corpus, "valid")]
    try:
        base = PhoneticEncoderConfig.from_corpus(manifests)
        encoder_config = config_from_dict(
            PhoneticEncoderConfig, {**base.to_dict(), **model.get("encoder", {})}
        )
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(
            f"[model.encoder] does not make a valid PhoneticEncoderConfig: {err}"
        ) from err
    trained = train_phonetic_encoder(
        corpus, job.run_path / "encoder", _trainer_config(job), config=encoder_config
    )
    data = AudioDataset(
        _manifest(corpus, "train"), sample_rate=trained.model.sample_rate, crop_seconds=None
    )
    tokenizer = PhoneticKMeansTokenizer.fit(
        trained.model, data, _config(KMeansTrainConfig, job.train, "train"), layer=layer,
        state_dir=job.run_path / "kmeans",
    )  # fmt: skip
    if _is_main():
        tokenizer.save_pretrained(job.output)
    return {
        "num_clusters": float(tokenizer.codebook_size),
        **{k: float(v) for k, v in trained.metrics.items()},
    }


def _trainer_config(job: TrainJob, **defaults: Any) -> TrainerConfig:
    return _config(TrainerConfig, job.trainer, "trainer", **defaults)


def _start_model(
    job: TrainJob, model_class: type, build: Callable[[], Any], fits: dict[str, Any]
) -> Any:
    """The model a stage trains: a new one of ``build()``'s config, or the ``init_from``
    release, whose config must agree with the data on ``fits`` (dotted config field -> the
    shards' value: a model of another codec's codes would train on tokens it cannot read)."""
    if job.init_from is None:
        return model_class(build())
    model = cast(Any, model_class).load_pretrained(job.init_from)  # missing: CheckpointError
    for name, want in fits.items():
        have: Any = model.config
        for part in name.split("."):
            have = getattr(have, part)
        if have != want:
            raise PipelineError(
                f"init_from {job.init_from} has {name} = {have!r} but the shards have {want!r}: "
                "fine-tune on shards written with the codec and semantic tokenizer it was "
                "trained on (`cadence tokenize`)"
            )
    return model


def _release(trainer: Trainer, job: TrainJob) -> dict[str, float]:
    metrics = trainer.evaluate() if trainer.eval_dataloader is not None else {}
    trainer.save_pretrained(job.output)  # every process calls it; the main one writes
    return {k: float(v) for k, v in metrics.items()}


def _train_semantic_lm(job: TrainJob) -> dict[str, float]:
    from cadence.audiolm import (
        AudioLMTrainConfig,
        SemanticTransformer,
        SemanticTransformerConfig,
        StageDataset,
        StageTrainStep,
        collate_stage,
        speaker_groups,
    )

    train, valid = _open_shards(job, "train"), _open_shards(job, "valid")
    meta = train.metadata
    fits = {
        "codebook_size": meta["tokenizer_codebook_size"],
        "frame_rate": meta["tokenizer_frame_rate"],
    }
    model = _start_model(
        job,
        SemanticTransformer,
        lambda: _config(SemanticTransformerConfig, job.model, "model", **fits),
        fits,
    )
    config = model.config
    groups = None
    if job.speaker_chains:
        groups = speaker_groups(train.ids, _manifest(cast(str, job.corpus), "train"))
    step = StageTrainStep(_config(AudioLMTrainConfig, job.train, "train"))
    trainer = Trainer(
        model,
        step,
        # AudioLM trains on long crops, not utterances: chains of one speaker's utterances teach
        # the LM to go on past an utterance's end instead of stopping there.
        StageDataset(train, config, groups=groups),
        _trainer_config(job),
        output_dir=job.run_path,
        collate_fn=collate_stage,
        eval_dataset=StageDataset(valid, config),
    )
    trainer.train(resume_from="latest")
    metrics = _release(trainer, job)
    if "loss" in metrics:
        metrics["perplexity"] = float(torch.tensor(metrics["loss"]).exp())
    return metrics


def _train_soundstorm(job: TrainJob) -> dict[str, float]:
    from cadence.soundstorm import (
        SoundStorm,
        SoundStormConfig,
        SoundStormTrainConfig,
        train_soundstorm,
    )

    meta = _open_shards(job, "train").metadata
    fits = {
        "num_quantizers": meta["num_quantizers"],
        "codebook_size": meta["codebook_size"],
        "frame_rate": meta["frame_rate"],
        "semantic_codebook_size": meta["tokenizer_codebook_size"],
        "semantic_frame_rate": meta["tokenizer_frame_rate"],
    }
    model = _start_model(
        job, SoundStorm, lambda: _config(SoundStormConfig, job.model, "model", **fits), fits
    )
    trainer = train_soundstorm(
        model,
        Path(cast(str, job.shards)) / "train",
        _trainer_config(job),
        train_config=_config(SoundStormTrainConfig, job.train, "train"),
        output_dir=job.run_path,
        valid_dir=Path(cast(str, job.shards)) / "valid",
    )
    return _release(trainer, job)


def _train_naturalspeech2(job: TrainJob) -> dict[str, float]:
    from cadence.naturalspeech2 import (
        NaturalSpeech2,
        NaturalSpeech2TrainConfig,
        NaturalSpeech2TrainStep,
        codebooks_from_codec,
        collate_ns2,
        config_from_shards,
    )

    codec = load_component(
        cast(str, job.codec), "codec", LatentCodec
    )  # NaturalSpeech 2 diffuses the codec's latents
    if job.shards is not None:
        for split in ("train", "valid"):
            if not (Path(job.shards) / split / "manifest.json").is_file():
                raise PipelineError(
                    f"no NaturalSpeech 2 shards in {Path(job.shards) / split}: the real recipes "
                    "write them in their `durations` step (or drop `shards` to make them here)"
                )
        train, valid = _open_shards(job, "train"), _open_shards(job, "valid")
        if "durations" not in train.fields:
            raise PipelineError(
                f"{job.shards} holds no NaturalSpeech 2 shards (no durations); write them with "
                "cadence.naturalspeech2.preprocess_corpus, or drop `shards` to make them here"
            )
    else:
        train, valid = _ns2_shards(job, codec)
    try:
        config = config_from_shards(train, **job.model)
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(f"[model] does not make a valid NaturalSpeech2Config: {err}") from err
    trainer = Trainer(
        NaturalSpeech2(config),
        NaturalSpeech2TrainStep(
            _config(NaturalSpeech2TrainConfig, job.train, "train"),
            codebooks=codebooks_from_codec(codec),
        ),
        train,
        _trainer_config(job),
        output_dir=job.run_path,
        collate_fn=collate_ns2,
        eval_dataset=valid,
    )
    trainer.train(resume_from="latest")
    return _release(trainer, job)


def _ns2_shards(job: TrainJob, codec: LatentCodec) -> tuple[ShardReader, ShardReader]:
    """Preprocess the job's corpus into ``run_dir/shards`` (aligner durations if it names one)."""
    from cadence.naturalspeech2 import Aligner, config_from_shards, preprocess_corpus

    aligner = load_component(job.aligner, "aligner", Aligner) if job.aligner else None
    durations: Literal["aligner", "espeak"] = "aligner" if aligner is not None else "espeak"
    shard_dir = job.run_path / "shards"
    corpus = cast(str, job.corpus)
    train = preprocess_corpus(
        corpus, codec, shard_dir / "train", split="train", durations=durations, aligner=aligner
    )
    valid = preprocess_corpus(corpus, codec, shard_dir / "valid", split="valid",
                              vocabulary=config_from_shards(train).vocabulary,
                              durations=durations, aligner=aligner)  # fmt: skip
    return train, valid


def _train_aligner(job: TrainJob) -> dict[str, float]:
    """The unsupervised aligner (Badlani et al. 2022) on the corpus' phonemes and log-mel frames
    at the codec's frame rate, so that its durations count the codec's latent frames."""
    from cadence.naturalspeech2 import (
        Aligner,
        AlignerConfig,
        AlignerDataset,
        AlignerTrainConfig,
        AlignerTrainStep,
        PhonemeVocabulary,
        collate_aligner,
    )
    from cadence.naturalspeech2.text import SILENCE

    codec = load_component(cast(str, job.codec), "codec")
    hop = round(codec.sample_rate / codec.frame_rate)
    corpus = cast(str, job.corpus)
    vocabulary = PhonemeVocabulary.build(
        [SILENCE, *row.get("phonemes", [])] for row in _manifest_rows(corpus, "train")
    )
    if len(vocabulary) <= 4:
        raise PipelineError(
            f"{_manifest(corpus, 'train')} has no phonemes: phonemize its text first (the real "
            "recipes' `phonemes` step, cadence.pipeline.real_phonemes.phonemize_manifests)"
        )
    config = _config(AlignerConfig, job.model, "model", vocab_size=len(vocabulary),
                     phonemes=vocabulary.symbols)  # fmt: skip
    max_seconds = _config(AlignerTrainConfig, job.train, "train").max_seconds
    data = {
        split: AlignerDataset(_manifest(corpus, split), vocabulary, sample_rate=codec.sample_rate,
                              hop_length=hop, n_mels=config.feature_dim, max_seconds=max_seconds)
        for split in ("train", "valid")
    }  # fmt: skip
    if len(data["train"]) == 0:
        raise PipelineError(f"{_manifest(corpus, 'train')}: no utterance the aligner can use")
    trainer = Trainer(
        Aligner(config),
        AlignerTrainStep(),
        data["train"],
        _trainer_config(job),
        output_dir=job.run_path,
        collate_fn=collate_aligner,
        eval_dataset=data["valid"] if len(data["valid"]) else None,
    )
    trainer.train(resume_from="latest")
    return _release(trainer, job)


def _manifest_rows(corpus: str, split: str) -> Any:
    import json

    with _manifest(corpus, split).open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _train_flowmatching(job: TrainJob) -> dict[str, float]:
    from cadence.flowmatching import (
        FlowMatchingTrainConfig,
        HierarchicalConditionalFlowMatcher,
        HierarchicalFlowMatcherConfig,
        build_trainer,
        fit_latent_statistics,
    )

    train, valid = _open_shards(job, "train"), _open_shards(job, "valid")
    meta = train.metadata
    if "latents" not in train.fields:
        raise PipelineError(
            "flowmatching needs latents in the shards: run `cadence tokenize --latents`"
        )
    model_values = dict(job.model)
    flow = dict(model_values.pop("flow", {}))
    flow.setdefault("latent_dim", meta["latent_dim"])
    fits = {
        "codebook_size": meta["tokenizer_codebook_size"],
        "semantic_frame_rate": meta["tokenizer_frame_rate"],
        "latent_frame_rate": meta["latent_frame_rate"],
    }
    model = _start_model(
        job,
        HierarchicalConditionalFlowMatcher,
        lambda: _config(
            HierarchicalFlowMatcherConfig, {**model_values, "flow": flow}, "model", **fits
        ),
        {**fits, "flow.latent_dim": meta["latent_dim"]},
    )
    if job.init_from is None:
        # A release keeps the statistics its weights were trained against: refitting them
        # would rescale every input and target under the learned network.
        fit_latent_statistics(model, train)
    trainer = build_trainer(
        model,
        train,
        _trainer_config(job),
        output_dir=job.run_path,
        eval_shards=valid,
        max_frames=job.max_frames,
        train_config=_config(FlowMatchingTrainConfig, job.train, "train"),
    )
    trainer.train(resume_from="latest")
    return _release(trainer, job)


def _train_phoneme_recognizer(job: TrainJob) -> dict[str, float]:
    from cadence.evaluation import PhonemeRecognizerConfig, train_phoneme_recognizer

    manifests = [
        _manifest(cast(str, job.corpus), "train"),
        _manifest(cast(str, job.corpus), "valid"),
    ]
    try:
        config = PhonemeRecognizerConfig.from_corpus(manifests, **job.model)
    except (ConfigError, TypeError, ValueError) as err:
        raise PipelineError(
            f"[model] does not make a valid PhonemeRecognizerConfig: {err}"
        ) from err
    model, metrics = train_phoneme_recognizer(
        cast(str, job.corpus), job.run_path, _trainer_config(job), config=config
    )
    if _is_main():
        model.save_pretrained(job.output)
    return {k: float(v) for k, v in metrics.items()}


TRAINERS: dict[str, Callable[[TrainJob], dict[str, float]]] = {
    "codec": _train_codec,
    "semantic_tokenizer": _train_semantic_tokenizer,
    "semantic_lm": _train_semantic_lm,
    "soundstorm": _train_soundstorm,
    "naturalspeech2": _train_naturalspeech2,
    "aligner": _train_aligner,
    "flowmatching": _train_flowmatching,
    "phoneme_recognizer": _train_phoneme_recognizer,
}


def run_job(job: TrainJob) -> dict[str, float]:
    """Train one stage and write its release checkpoint; returns the final evaluation metrics."""
    # The model is built (initialized) before the Trainer seeds anything: seed first, from the
    # trainer's seed, so that two runs of one job start from the same weights (issue 20).
    seed = job.trainer.get("seed", 0)
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        set_seed(seed)
    metrics = TRAINERS[job.stage](job)
    _write_summary(job, metrics)
    return metrics


# ------------------------------------------------------------------------------- tokenizing


def tokenize_corpus(
    data: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    codec: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    latents: bool = False,
    batch_size: int = 8,
    accelerator: Any = None,
    progress: bool = True,
    min_seconds: float = 0.1,
) -> Path:
    """Precompute shards of a manifest (or of every ``.jsonl``-less audio folder) with a codec
    and/or a semantic tokenizer given as checkpoint directories; see ``cadence.core.data.precompute``.
    Items shorter than ``min_seconds`` are skipped (listed in the manifest), as are truncated files.
    """
    if codec is None and tokenizer is None:
        raise PipelineError(
            "give a codec, a semantic tokenizer or both (--codec DIR, --tokenizer DIR)"
        )
    codec_model: Any = None
    if codec is not None:
        # --latents needs a codec that exposes them (a LatentCodec such as SoundStream)
        codec_model = load_component(codec, "codec", LatentCodec if latents else Codec)
    elif latents:
        raise PipelineError(
            "--latents needs a codec with latents (--codec DIR, e.g. a SoundStream)"
        )
    token_model: Any = (
        load_component(tokenizer, "semantic_tokenizer") if tokenizer is not None else None
    )
    data = Path(data)
    if not data.exists():
        raise PipelineError(f"data not found: {data}")
    sample_rate = (codec_model or token_model).sample_rate
    dataset = AudioDataset(data, sample_rate=sample_rate, crop_seconds=None)
    return precompute(
        dataset,
        output_dir,
        codec=codec_model,
        tokenizer=token_model,
        latent_codec=codec_model if latents else None,
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
        min_seconds=min_seconds,
    )
