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
* **intelligibility**: a CTC phoneme recognizer trained on the toy corpus stands in for the
  papers' ASR word error rate: its phoneme error rate (PER) on the originals, the codec's
  resynthesis, SoundStorm's and the flow's resynthesis, and NaturalSpeech 2's speech.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cadence.core.audio import load
from cadence.core.interfaces import Codec, LatentCodec, SemanticTokenizer

from .components import PipelineError, load_component
from .pipeline import PipelineSpec


def _read_items(corpus: Path, limit: int | None) -> list[dict[str, Any]]:
    manifest = corpus / "valid.jsonl"
    if not manifest.is_file():
        raise PipelineError(f"{manifest} not found; evaluation needs a corpus with valid.jsonl")
    items = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    if not items:
        raise PipelineError(f"{manifest} is empty")
    return items[:limit] if limit else items


def _voice_prompts(items: list[dict[str, Any]]) -> list[int]:
    """For each item, another item of the same speaker (the item itself when it is alone)."""
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_speaker[item.get("speaker", "")].append(i)
    out = []
    for i, item in enumerate(items):
        same = by_speaker[item.get("speaker", "")]
        out.append(same[(same.index(i) + 1) % len(same)])
    return out


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


class _PER:
    """Phoneme error rates of several systems against the same references."""

    def __init__(self, recognizer, references: list[list[str]]):
        from cadence.evaluation import phoneme_error_rate

        self.recognizer, self.references, self.score = recognizer, references, phoneme_error_rate
        self.hypotheses: dict[str, dict[int, list[str]]] = defaultdict(dict)

    def add(self, system: str, index: int, audio: Tensor, sample_rate: int) -> None:
        if self.recognizer is not None:
            self.hypotheses[system][index] = self.recognizer.transcribe(audio, sample_rate=sample_rate)[0]

    def report(self) -> dict[str, float]:
        out = {}
        for system, hyps in self.hypotheses.items():
            keys = sorted(hyps)
            out[f"per_{system}"] = self.score([self.references[k] for k in keys], [hyps[k] for k in keys])
        return out


@torch.no_grad()
def evaluate_pipeline(
    pipeline_dir: str | os.PathLike,
    corpus: str | os.PathLike,
    *,
    limit: int | None = None,
    prompt_seconds: float = 3.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every component ``pipeline_dir`` has on ``corpus/valid.jsonl``; returns
    ``{model: {metric: value}}`` plus ``"intelligibility"`` and ``"setup"``."""
    from cadence.codec.metrics import codec_metrics, mel_distance
    from cadence.evaluation import normalize_phonemes

    spec = PipelineSpec.read(pipeline_dir)
    corpus = Path(corpus)
    items = _read_items(corpus, limit)
    codec = load_component(spec.path("codec"), "codec")
    if not isinstance(codec, Codec):
        raise PipelineError(f"codec: {spec.path('codec')} does not hold a codec")
    rate, hop = codec.sample_rate, round(codec.sample_rate / codec.frame_rate)
    audios = [load(corpus / item["path"], sample_rate=rate, channels=codec.channels)[0] for item in items]
    references = [normalize_phonemes(item["phonemes"]) for item in items]
    recognizer = None
    if spec.has("phoneme_recognizer"):
        from cadence.evaluation import PhonemeRecognizer

        recognizer = load_component(spec.path("phoneme_recognizer"), "phoneme_recognizer", PhonemeRecognizer)
    per = _PER(recognizer, references)
    tokenizer = None
    if spec.has("semantic_tokenizer"):
        tokenizer = load_component(spec.path("semantic_tokenizer"), "semantic_tokenizer")
        if not isinstance(tokenizer, SemanticTokenizer):
            raise PipelineError(f"semantic_tokenizer: {spec.path('semantic_tokenizer')} is not a semantic tokenizer")
    prompts = _voice_prompts(items)
    report: dict[str, Any] = {"setup": {"utterances": len(items), "corpus": str(corpus), "seed": seed,
                                        "prompt_seconds": prompt_seconds}}
    bar = (lambda it, desc: tqdm(it, desc=desc, leave=False)) if progress else (lambda it, desc: it)

    # codec resynthesis (and the originals' PER)
    codes_all, metrics = [], defaultdict(list)
    for i, audio in enumerate(bar(audios, "codec")):
        per.add("original", i, audio, rate)
        codes = codec.encode(audio[None])
        codes_all.append(codes[0])
        resynth = codec.decode(codes)[..., : audio.shape[-1]]
        for k, v in codec_metrics(resynth, audio[None], rate, perceptual=None).items():
            metrics[k].append(v)
        per.add("codec", i, resynth[0], rate)
    report["codec"] = {k: _mean(v) for k, v in metrics.items()}

    semantic = [tokenizer.tokenize(a[None])[0] for a in audios] if tokenizer is not None else None

    if spec.has("semantic_lm") and semantic is not None:
        from cadence.audiolm import SemanticTransformer

        lm = load_component(spec.path("semantic_lm"), "semantic_lm", SemanticTransformer)
        nll, count = 0.0, 0
        for tokens in bar(semantic, "semantic_lm"):
            tokens = tokens[: lm.config.max_frames]
            ends = torch.tensor([tokens.shape[0] < lm.config.max_frames])
            out = lm(tokens[None], torch.tensor([tokens.shape[0]]), ends=ends)
            n = tokens.shape[0] + int(ends[0])  # predicted positions: every token, plus EOS at the end
            nll += float(out.loss) * n
            count += n
        unigram = Counter(int(t) for tokens in semantic for t in tokens)
        total = sum(unigram.values())
        entropy = -sum(c / total * math.log(c / total) for c in unigram.values())
        report["semantic_lm"] = {"perplexity": math.exp(nll / count), "unigram_perplexity": math.exp(entropy),
                                 "codebook_size": float(lm.config.codebook_size)}

    if spec.has("soundstorm") and semantic is not None:
        from cadence.soundstorm import SoundStorm

        storm = load_component(spec.path("soundstorm"), "soundstorm", SoundStorm)
        generator = torch.Generator().manual_seed(seed)
        q = storm.config.num_quantizers
        correct, total_frames = torch.zeros(q), 0
        storm_mel, codec_mel = [], []
        ratio = tokenizer.frame_rate / codec.frame_rate
        for i, (audio, codes, tokens) in enumerate(bar(list(zip(audios, codes_all, semantic)), "soundstorm")):
            n = codes.shape[0]
            p = min(round(prompt_seconds * codec.frame_rate), n // 2)
            ps = round(p * ratio)
            out = storm.generate(tokens[None, ps:], num_frames=n - p, prompt_codes=codes[None, :p],
                                 prompt_semantic=tokens[None, :ps], generator=generator)
            new = out.codes[0, : n - p]
            correct += (new == codes[p:]).float().sum(0)
            total_frames += n - p
            decoded = codec.decode(out.sequence[:, :n])[..., : audio.shape[-1]]
            span = slice(p * hop, audio.shape[-1])
            storm_mel.append(float(mel_distance(decoded[..., span], audio[None, :, span], rate).mean()))
            resynth = codec.decode(codes[None])[..., : audio.shape[-1]]
            codec_mel.append(float(mel_distance(resynth[..., span], audio[None, :, span], rate).mean()))
            per.add("soundstorm", i, decoded[0], rate)
        accuracy = correct / max(total_frames, 1)
        report["soundstorm"] = {**{f"accuracy_level_{k}": float(a) for k, a in enumerate(accuracy)},
                                "mel_distance": _mean(storm_mel), "mel_distance_codec_resynthesis": _mean(codec_mel)}

    if spec.has("naturalspeech2"):
        from .synthesis import TextToSpeech

        tts = TextToSpeech.from_pretrained(spec.directory)
        ratios = []
        for i, item in enumerate(bar(items, "naturalspeech2")):
            voice = audios[prompts[i]][..., : round(prompt_seconds * rate)]
            speech = tts.synthesize(item["text"], voice, sample_rate=rate, seed=seed + i)
            ratios.append(speech.shape[-1] / audios[i].shape[-1])
            per.add("naturalspeech2", i, speech, rate)
        report["naturalspeech2"] = {"length_ratio": _mean(ratios)}

    if spec.has("flowmatching") and tokenizer is not None and isinstance(codec, LatentCodec):
        from .synthesis import VoiceConversion

        vc = VoiceConversion.from_pretrained(spec.directory, method="flow")
        mels = []
        for i, audio in enumerate(bar(audios, "flowmatching")):
            voice = audios[prompts[i]][..., : round(prompt_seconds * rate)]
            converted = vc.convert(audio, voice, sample_rate=rate, steps=16, seed=seed + i)
            length = min(converted.shape[-1], audio.shape[-1])
            mels.append(float(mel_distance(converted[None, :, :length], audio[None, :, :length], rate).mean()))
            per.add("flowmatching", i, converted, rate)
        report["flowmatching"] = {"mel_distance": _mean(mels)}

    if recognizer is not None:
        report["intelligibility"] = per.report()
    return report
