"""``cadence eval``: objective, offline metrics of every model in a pipeline, on held-out speech.

* **codec**: SI-SNR, mel and STFT distance, PESQ / STOI when installed, of the resynthesis.
* **semantic_lm** (AudioLM's semantic stage): perplexity of the held-out token sequences,
  next to the perplexity of a unigram model fitted on those same tokens (a context-free
  baseline that is favoured, since it sees the test set).
* **soundstorm**: with ground-truth semantic tokens and a ``prompt_seconds`` acoustic prompt
  (the prompt is at most half of the utterance, since the toy utterances are short), the
  token accuracy of each level over the generated frames, and the mel distance of the
  decoded frames to the original, next to the codec's own resynthesis of the same frames.
* **naturalspeech2**: TTS of each held-out transcript in the voice of another utterance of
  the same (unseen) speaker; the phoneme error rate below, and the length ratio.
* **flowmatching**: voice conversion of each utterance into the voice of another utterance
  of its speaker: mel distance to the original and phoneme error rate.
* **continuation**: the whole chain continues the first ``prompt_seconds`` of each utterance
  (at most half of it) by ``continuation_seconds``; the continuation's speaker similarity to
  its prompt.
* **voice conversion** (SoundStorm and flow): each utterance said in the voice of another
  held-out speaker (the voice prompt is one utterance of that speaker, the similarity is
  measured against another one), and its PER against the source's transcript.
* **intelligibility**: a CTC phoneme recognizer trained on the toy corpus stands in for the
  papers' ASR word error rate: its phoneme error rate (PER) on the originals, the codec's
  resynthesis, SoundStorm's and the flow's resynthesis, and NaturalSpeech 2's speech.
* **speaker_similarity**: cosine between Resemblyzer speaker embeddings (the
  ``cadence-evaluation[speaker]`` extra) of each system's speech and the reference it should
  sound like, next to the originals' same-speaker and different-speaker means.

Each model has its own evaluator (``evaluate_<role>``) over one :class:`EvalSet`: the
held-out utterances loaded once at the codec's rate, with their transcripts and, for each,
another utterance of the same speaker to take the voice from. The speech every evaluator
makes goes to the :class:`Listener`, which scores it (PER) and can keep it for a report; the
listener also collects every evaluator's per-utterance values (:meth:`Listener.items`, the rows
of ``cadence eval --report``), from which the aggregates are computed as before.
"""

# b batch | c channels | t samples | n codec frames | s semantic frames | q levels

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cadence.core.audio import load

from .components import PipelineError
from .guidance import SOUNDSTORM_GUIDANCE, soundstorm_scales
from .pipeline import PipelineSpec

__all__ = ["EvalSet", "Listener", "evaluate_pipeline"]


@dataclass
class EvalSet:
    """The held-out utterances an evaluation runs on, loaded once.

    Attributes:
        items: the manifest rows (``id``, ``path``, ``text``, ``phonemes``, ``speaker``).
        audios: each utterance ``(c, t)`` at ``sample_rate``.
        references: normalized phonemes of each utterance (the PER references).
        voice_of: for each utterance, another utterance of the same speaker (the voice prompt
            of TTS and voice conversion; the utterance itself when its speaker has one).
    """

    items: list[dict[str, Any]]
    audios: list[Tensor]
    references: list[list[str]]
    voice_of: list[int]
    sample_rate: int
    prompt_seconds: float
    seed: int

    def voice(self, index: int) -> Tensor:
        """The voice prompt of utterance ``index``: the first ``prompt_seconds`` of its partner."""
        return self.audios[self.voice_of[index]][
            ..., : round(self.prompt_seconds * self.sample_rate)
        ]

    @property
    def speakers(self) -> list[str]:
        return [str(item.get("speaker", "")) for item in self.items]

    def other_speaker(self, index: int) -> int | None:
        """An utterance of the next held-out speaker after ``index``'s (None: only one speaker)."""
        names = sorted(set(self.speakers))
        if len(names) < 2:
            return None
        target = names[(names.index(self.speakers[index]) + 1) % len(names)]
        same = [i for i, name in enumerate(self.speakers) if name == target]
        return same[index % len(same)]

    @classmethod
    def read(
        cls,
        corpus: Path,
        sample_rate: int,
        channels: int,
        *,
        limit: int | None,
        prompt_seconds: float,
        seed: int,
    ) -> EvalSet:
        from cadence.evaluation import normalize_phonemes

        manifest = corpus / "valid.jsonl"
        if not manifest.is_file():
            raise PipelineError(f"{manifest} not found; evaluation needs a corpus with valid.jsonl")
        items = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        if not items:
            raise PipelineError(f"{manifest} is empty")
        items = items[:limit] if limit else items
        audios = [
            load(corpus / item["path"], sample_rate=sample_rate, channels=channels)[0]
            for item in items
        ]
        return cls(
            items=items,
            audios=audios,
            references=[normalize_phonemes(i["phonemes"]) for i in items],
            voice_of=_voice_partners(items),
            sample_rate=sample_rate,
            prompt_seconds=prompt_seconds,
            seed=seed,
        )


def _voice_partners(items: list[dict[str, Any]]) -> list[int]:
    """For each item, the next item of the same speaker (the item itself when it is alone)."""
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_speaker[item.get("speaker", "")].append(i)
    out = []
    for i, item in enumerate(items):
        same = by_speaker[item.get("speaker", "")]
        out.append(same[(same.index(i) + 1) % len(same)])
    return out


def _fit(audio: Tensor, length: int) -> Tensor:
    """Crop or zero-pad ``(..., t)`` to ``length`` samples (codecs decode whole frames only:
    ceil-frame codecs run past the end, floor-frame ones stop before its last partial frame)."""
    return torch.nn.functional.pad(audio[..., :length], (0, max(0, length - audio.shape[-1])))


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


@dataclass
class Listener:
    """Hears what every system says: phoneme error rates against the same references.

    ``keep`` is called with ``(system, index, audio)`` for every utterance heard (a report
    writer keeps the audio; the default keeps nothing). ``notes`` holds the evaluators'
    per-utterance values (:meth:`note`); :meth:`items` adds each utterance's own PER.
    """

    recognizer: Any
    references: list[list[str]]
    sample_rate: int
    keep: Callable[[str, int, Tensor], None] | None = None
    speaker: Any = None
    hypotheses: dict[str, dict[int, list[str]]] = field(default_factory=lambda: defaultdict(dict))
    similarities: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    notes: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def note(self, index: int, key: str, value: float) -> None:
        """Record one per-utterance value (``"codec/si_snr"``) of utterance ``index``."""
        self.notes[index][key] = float(value)

    def items(self) -> dict[int, dict[str, float]]:
        """Every utterance's values: the notes, plus ``per/<system>``, its own phoneme error
        rate (the aggregate PER is corpus-level: total edits over total length, not their mean)."""
        from cadence.evaluation import phoneme_error_rate

        out: dict[int, dict[str, float]] = defaultdict(dict)
        for index, values in self.notes.items():
            out[index].update(values)
        for system, hyps in self.hypotheses.items():
            for index, hyp in hyps.items():
                out[index][f"per/{system}"] = phoneme_error_rate([self.references[index]], [hyp])
        return dict(out)

    def hear(
        self,
        system: str,
        index: int,
        audio: Tensor,
        *,
        voice: Tensor | None = None,
        transcript: bool = True,
    ) -> None:
        """Score ``audio``: PER against reference ``index`` (``transcript``), and speaker
        similarity to ``voice``, the clip it should sound like (when a speaker encoder is on)."""
        if self.recognizer is not None and transcript:
            self.hypotheses[system][index] = self.recognizer.transcribe(
                audio, sample_rate=self.sample_rate
            )[0]
        if self.speaker is not None and voice is not None:
            from cadence.evaluation import similarity

            pair = self.speaker.embed([audio, voice], sample_rate=self.sample_rate)
            self.similarities[system].append(float(similarity(pair[0], pair[1])))
            self.note(index, f"similarity/{system}", self.similarities[system][-1])
        if self.keep is not None:
            self.keep(system, index, audio)

    def speaker_report(self, data: EvalSet) -> dict[str, float]:
        """Mean similarity per system, and the originals' same- and different-speaker means."""
        from cadence.evaluation import speaker_pair_similarity

        embeddings = self.speaker.embed(data.audios, sample_rate=self.sample_rate)
        pairs = speaker_pair_similarity(embeddings, data.speakers)
        out = {
            "originals_same_speaker": pairs.same_speaker,
            "originals_different_speaker": pairs.different_speaker,
        }
        return out | {system: _mean(values) for system, values in self.similarities.items()}

    def report(self) -> dict[str, float]:
        from cadence.evaluation import phoneme_error_rate

        out = {}
        for system, hyps in self.hypotheses.items():
            keys = sorted(hyps)
            out[f"per_{system}"] = phoneme_error_rate(
                [self.references[k] for k in keys], [hyps[k] for k in keys]
            )
        return out


Progress = Callable[[Iterable, str], Iterable]


# ----------------------------------------------------------------------------- evaluators


def evaluate_codec(
    data: EvalSet, codec, listener: Listener, progress: Progress
) -> tuple[dict[str, float], list[Tensor]]:
    """Resynthesis metrics of the codec; also returns each utterance's codes ``(n, q)``."""
    from cadence.codec.metrics import codec_metrics

    codes_all, metrics = [], defaultdict(list)
    for i, audio in enumerate(progress(data.audios, "codec")):
        listener.hear("original", i, audio)
        codes = codec.encode(audio[None])
        codes_all.append(codes[0])
        resynth = _fit(codec.decode(codes), audio.shape[-1])
        for k, v in codec_metrics(resynth, audio[None], data.sample_rate, perceptual=None).items():
            metrics[k].append(v)
            listener.note(i, f"codec/{k}", v)
        listener.hear("codec", i, resynth[0], voice=audio)
    return {k: _mean(v) for k, v in metrics.items()}, codes_all


def evaluate_semantic_lm(
    lm, semantic: list[Tensor], progress: Progress, listener: Listener | None = None
) -> dict[str, float]:
    """Held-out perplexity of the semantic LM, next to a unigram fitted on the same tokens."""
    from cadence.audiolm import stage_step

    nll, count = 0.0, 0
    for i, tokens in enumerate(progress(semantic, "semantic_lm")):
        tokens = tokens[: lm.config.max_frames]
        ends = torch.tensor([tokens.shape[0] < lm.config.max_frames])
        loss = stage_step(
            lm,
            {
                "tokens": tokens[None],
                "tokens_lengths": torch.tensor([tokens.shape[0]]),
                "ends": ends,
            },
        ).loss
        n = tokens.shape[0] + int(ends[0])  # predicted positions: every token, plus EOS at the end
        nll, count = nll + float(loss) * n, count + n
        if listener is not None:
            listener.note(i, "semantic_lm/perplexity", math.exp(float(loss)))
    unigram = Counter(int(t) for tokens in semantic for t in tokens)
    size = sum(unigram.values())
    entropy = -sum(c / size * math.log(c / size) for c in unigram.values())
    return {
        "perplexity": math.exp(nll / count),
        "unigram_perplexity": math.exp(entropy),
        "codebook_size": float(lm.config.codebook_size),
    }


def evaluate_soundstorm(
    data: EvalSet,
    storm,
    codec,
    tokenizer,
    codes_all: list[Tensor],
    semantic: list[Tensor],
    listener: Listener,
    progress: Progress,
) -> dict[str, float | list[float]]:
    """SoundStorm with ground-truth semantic tokens and an acoustic prompt of the utterance
    itself, sampled as the pipelines sample it (guidance :data:`SOUNDSTORM_GUIDANCE`).

    What is heard (PER, similarity) is the whole utterance: the prompt part (at most half)
    is the codec's resynthesis. ``similarity_generated_part`` compares only the generated
    frames with the same span of the original (with a speaker encoder).
    """
    from cadence.codec.metrics import mel_distance
    from cadence.evaluation import similarity

    generator = torch.Generator().manual_seed(data.seed)
    rate, hop = data.sample_rate, round(data.sample_rate / codec.frame_rate)
    correct, total_frames = torch.zeros(storm.config.num_quantizers), 0
    storm_mel, codec_mel, generated_similarity = [], [], []
    ratio = tokenizer.frame_rate / codec.frame_rate
    for i, (audio, codes, tokens) in enumerate(
        progress(list(zip(data.audios, codes_all, semantic)), "soundstorm")
    ):
        n = codes.shape[0]
        p = min(round(data.prompt_seconds * codec.frame_rate), n // 2)
        ps = round(p * ratio)
        out = storm.generate(
            tokens[None, ps:],
            num_frames=n - p,
            prompt_codes=codes[None, :p],
            prompt_semantic=tokens[None, :ps],
            guidance_scale=soundstorm_scales(SOUNDSTORM_GUIDANCE, storm.config.num_quantizers),
            generator=generator,
        )
        hits = (out.codes[0, : n - p] == codes[p:]).float()
        correct += hits.sum(0)
        total_frames += n - p
        if n > p:
            listener.note(i, "soundstorm/accuracy", float(hits.mean()))
        decoded = _fit(codec.decode(out.sequence[:, :n]), audio.shape[-1])
        span = slice(p * hop, audio.shape[-1])
        storm_mel.append(float(mel_distance(decoded[..., span], audio[None, :, span], rate).mean()))
        resynth = _fit(codec.decode(codes[None]), audio.shape[-1])
        codec_mel.append(float(mel_distance(resynth[..., span], audio[None, :, span], rate).mean()))
        listener.note(i, "soundstorm/mel_distance", storm_mel[-1])
        listener.note(i, "soundstorm/mel_distance_codec_resynthesis", codec_mel[-1])
        listener.hear("soundstorm", i, decoded[0], voice=audio)
        if listener.speaker is not None and n > p:
            pair = listener.speaker.embed([decoded[0, :, span], audio[:, span]], sample_rate=rate)
            generated_similarity.append(float(similarity(pair[0], pair[1])))
            listener.note(i, "soundstorm/similarity_generated_part", generated_similarity[-1])
    accuracy = correct / max(total_frames, 1)
    figures: dict[str, float | list[float]] = {
        **{f"accuracy_level_{k}": float(a) for k, a in enumerate(accuracy)},
        "mel_distance": _mean(storm_mel),
        "mel_distance_codec_resynthesis": _mean(codec_mel),
        "guidance_scale": list(soundstorm_scales(SOUNDSTORM_GUIDANCE, storm.config.num_quantizers)),
    }
    if generated_similarity:
        figures["similarity_generated_part"] = _mean(generated_similarity)
    return figures


def evaluate_tts(data: EvalSet, tts, listener: Listener, progress: Progress) -> dict[str, float]:
    """NaturalSpeech 2 says each transcript in the voice of another utterance of its speaker,
    in the speaker's accent (the row's espeak ``voice``, when the corpus has one)."""
    ratios = []
    for i, item in enumerate(progress(data.items, "naturalspeech2")):
        # read in the speaker's own accent (the corpus' espeak voice): the references are
        # its phonemes, and reading every text in en-us cost ~10 points of PER that were
        # the accent, not the model (24.3% -> 13.8% on the toy held-out set)
        speech = tts.synthesize(
            item["text"],
            data.voice(i),
            sample_rate=data.sample_rate,
            seed=data.seed + i,
            accent=item.get("voice"),
        )
        ratios.append(speech.shape[-1] / data.audios[i].shape[-1])
        listener.note(i, "naturalspeech2/length_ratio", ratios[-1])
        listener.hear("naturalspeech2", i, speech, voice=data.voice(i))
    return {"length_ratio": _mean(ratios)}


def evaluate_conversion(
    data: EvalSet, vc, system: str, listener: Listener, progress: Progress
) -> dict[str, float]:
    """Each utterance in the voice of another held-out speaker (SpeechGPT-Gen's zero-shot VC).

    The voice prompt is one utterance of the target speaker; similarity is measured against
    another one of that speaker (so copying the prompt's recording does not score), PER
    against the source's transcript. With a single speaker the target is the source's own.
    """
    from cadence.codec.metrics import mel_distance

    mels = []
    for i, audio in enumerate(progress(data.audios, system)):
        other = data.other_speaker(i)
        target = i if other is None else other
        voice = data.audios[target][..., : round(data.prompt_seconds * data.sample_rate)]
        converted = vc.convert(
            audio, voice, sample_rate=data.sample_rate, steps=16, seed=data.seed + i
        )
        if other is None:  # the same speaker: the original is the reference
            length = min(converted.shape[-1], audio.shape[-1])
            mels.append(
                float(
                    mel_distance(
                        converted[None, :, :length], audio[None, :, :length], data.sample_rate
                    ).mean()
                )
            )
            listener.note(i, f"{system}/mel_distance", mels[-1])
        listener.hear(system, i, converted, voice=data.audios[data.voice_of[target]])
    return {"mel_distance": _mean(mels)} if mels else {"utterances": float(len(data.audios))}


def evaluate_continuation(data: EvalSet, pipe, listener: Listener, progress: Progress, *,
                          seconds: float) -> dict[str, float]:  # fmt: skip
    """The chain continues each utterance's first ``prompt_seconds`` (at most half of it).

    With a speaker encoder, ``similarity_of_the_original`` is the ceiling to read the
    continuation's similarity against: the same measure for what the speaker really said
    next (the utterance's following ``seconds``, or what is left of it), also short clips.
    """
    from cadence.audiolm import SamplingOptions
    from cadence.evaluation import similarity

    lengths, ceiling = [], []
    sampling = SamplingOptions(temperature=0.9, top_p=0.95, allow_eos=False)
    for i, audio in enumerate(progress(data.audios, "continuation")):
        prompt = audio[
            ..., : min(round(data.prompt_seconds * data.sample_rate), audio.shape[-1] // 2)
        ]
        out = pipe.generate(prompt, sample_rate=data.sample_rate, seconds=seconds, sampling=sampling,
                            seed=data.seed + i)  # fmt: skip
        continuation = out.audio[0, :, : int(out.lengths[0])]
        lengths.append(continuation.shape[-1] / data.sample_rate)
        listener.note(i, "continuation/seconds", lengths[-1])
        listener.hear("continuation", i, continuation, voice=prompt, transcript=False)
        real = audio[..., prompt.shape[-1] : prompt.shape[-1] + round(seconds * data.sample_rate)]
        if listener.speaker is not None and real.shape[-1] > 0:
            pair = listener.speaker.embed([real, prompt], sample_rate=data.sample_rate)
            ceiling.append(float(similarity(pair[0], pair[1])))
            listener.note(i, "continuation/similarity_of_the_original", ceiling[-1])
    out = {"seconds": _mean(lengths)}
    return out | ({"similarity_of_the_original": _mean(ceiling)} if ceiling else {})


# ----------------------------------------------------------------------------- the whole pipeline


@torch.no_grad()
def evaluate_pipeline(
    pipeline_dir: str | os.PathLike,
    corpus: str | os.PathLike,
    *,
    limit: int | None = None,
    prompt_seconds: float = 3.0,
    seed: int = 0,
    progress: bool = True,
    keep: Callable[[str, int, Tensor], None] | None = None,
    speaker_similarity: bool | None = None,
    continuation_seconds: float = 2.0,
    items: dict[int, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Evaluate every component ``pipeline_dir`` has on ``corpus/valid.jsonl``.

    Returns ``{model: {metric: value}}`` plus ``"intelligibility"``, ``"speaker_similarity"``
    and ``"setup"``. ``keep`` receives every utterance each system says (see :class:`Listener`).
    ``speaker_similarity``: measure it (needs ``cadence-evaluation[speaker]``); None: when
    installed. ``items``, when given, is filled with each utterance's values
    (``{index: {"codec/si_snr": ..., "per/codec": ...}}``, :meth:`Listener.items`).
    """
    spec = PipelineSpec.read(pipeline_dir)
    corpus = Path(corpus)
    codec = spec.load("codec")
    data = EvalSet.read(
        corpus,
        codec.sample_rate,
        codec.channels,
        limit=limit,
        prompt_seconds=prompt_seconds,
        seed=seed,
    )
    recognizer = spec.load("phoneme_recognizer") if spec.has("phoneme_recognizer") else None
    listener = Listener(recognizer, data.references, data.sample_rate, keep=keep,
                        speaker=_speaker_encoder(speaker_similarity))  # fmt: skip
    bar: Progress = (
        (lambda it, desc: tqdm(it, desc=desc, leave=False)) if progress else (lambda it, desc: it)
    )
    report: dict[str, Any] = {
        "setup": {
            "utterances": len(data.items),
            "corpus": str(corpus),
            "seed": seed,
            "prompt_seconds": prompt_seconds,
        }
    }

    report["codec"], codes_all = evaluate_codec(data, codec, listener, bar)
    tokenizer = spec.load("semantic_tokenizer") if spec.has("semantic_tokenizer") else None
    semantic = (
        [tokenizer.tokenize(a[None])[0] for a in data.audios] if tokenizer is not None else None
    )
    if spec.has("semantic_lm") and semantic is not None:
        report["semantic_lm"] = evaluate_semantic_lm(
            spec.load("semantic_lm"), semantic, bar, listener
        )
    if spec.has("soundstorm") and semantic is not None:
        report["soundstorm"] = evaluate_soundstorm(
            data, spec.load("soundstorm"), codec, tokenizer, codes_all, semantic, listener, bar
        )
    if spec.has("naturalspeech2"):
        from .synthesis import TextToSpeech

        report["naturalspeech2"] = evaluate_tts(
            data, TextToSpeech.from_pretrained(spec.directory), listener, bar
        )
    if spec.has("semantic_lm") and spec.has("soundstorm") and tokenizer is not None:
        from .continuation import SpeechContinuation

        pipe = SpeechContinuation.from_pretrained(spec.directory)
        report["continuation"] = evaluate_continuation(
            data, pipe, listener, bar, seconds=continuation_seconds
        )
    from .synthesis import VoiceConversion

    if spec.has("soundstorm") and tokenizer is not None:
        vc = VoiceConversion.from_pretrained(spec.directory, method="soundstorm")
        report["conversion_soundstorm"] = evaluate_conversion(
            data, vc, "conversion_soundstorm", listener, bar
        )
    if spec.has("flowmatching") and tokenizer is not None and hasattr(codec, "latent_dim"):
        vc = VoiceConversion.from_pretrained(spec.directory, method="flow")
        report["flowmatching"] = evaluate_conversion(data, vc, "flowmatching", listener, bar)
    if recognizer is not None:
        report["intelligibility"] = listener.report()
    if listener.speaker is not None:
        report["speaker_similarity"] = listener.speaker_report(data)
    if items is not None:
        items.update(listener.items())
    return report


def _speaker_encoder(wanted: bool | None) -> Any:
    """Resemblyzer's encoder when asked for (or, with None, when installed)."""
    if wanted is False:
        return None
    from cadence.evaluation import SpeakerEncoder

    try:
        return SpeakerEncoder()
    except ImportError:
        if wanted:
            raise
        return None
