"""Tokens per second on CPU: Cadence HubertKMeansTokenizer vs transformers.HubertModel + sklearn.

Both sides use the same random HuBERT-base weights (94 M parameters, 12 blocks) and the same
500 centroids, tokenize the same 60 s of toy-corpus speech (one clip) from layer 9, and run
in this process with ``torch.set_num_threads(2)``. The peer is the usual recipe
(audiolm-pytorch / fairseq ``dump_km_label``): ``HubertModel(..., output_hidden_states=True)``,
``hidden_states[9]`` to numpy, ``MiniBatchKMeans.predict``.

Run: ``uv run --no-sync python bench/semantic/bench_tokenize.py`` (about a minute on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cadence.core.data import AudioDataset
from cadence.core.testing import toy_corpus_dir
from cadence.semantic import Hubert, HubertKMeansTokenizer, KMeans
from cadence.semantic.loading import hf_config, hf_to_cadence_state


def speech(seconds: float) -> torch.Tensor:
    """``(1, 1, t)``: toy-corpus utterances end to end, cut to ``seconds``."""
    data = AudioDataset(toy_corpus_dir() / "train.jsonl", sample_rate=16000)
    need, parts, i = int(seconds * 16000), [], 0
    while sum(p.shape[-1] for p in parts) < need:
        parts.append(data[i % len(data)]["audio"])
        i += 1
    return torch.cat(parts, -1)[None, :, :need]


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--clusters", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    import transformers
    from sklearn.cluster import MiniBatchKMeans

    reference = transformers.HubertModel(transformers.HubertConfig()).eval()
    hubert = Hubert(hf_config(reference.config.to_dict(), output_layer=args.layer)).eval()
    hubert.load_state_dict(hf_to_cadence_state(reference.state_dict()))

    audio = speech(args.seconds)
    warm = audio[..., : 16000 * 4]
    # Centroids: sklearn fitted on layer features of 12 s of other speech (distinct frames,
    # so that near-identical centroids do not turn float rounding into different tokens).
    fit_audio = speech(args.seconds + 12.0)[..., -16000 * 12 :]
    with torch.inference_mode():
        sample = hubert(fit_audio[:, 0]).features[0].numpy()
    clusters = min(args.clusters, len(sample))
    sk = MiniBatchKMeans(
        n_clusters=clusters, n_init=1, max_iter=5, batch_size=1024, random_state=0
    ).fit(sample)
    tokenizer = HubertKMeansTokenizer.from_parts(
        hubert, KMeans.from_centroids(torch.from_numpy(sk.cluster_centers_))
    )

    def ours(x: torch.Tensor) -> np.ndarray:
        return tokenizer.tokenize(x)[0].numpy()

    def peer(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            hidden = reference(x[:, 0], output_hidden_states=True).hidden_states[args.layer]
        return sk.predict(hidden[0].numpy())

    ours(warm), peer(warm)  # warm-up: allocator, thread pools, sklearn checks
    t_ours, tokens_ours = best_time(lambda: ours(audio), args.repeats)
    t_peer, tokens_peer = best_time(lambda: peer(audio), args.repeats)
    n = len(tokens_ours)
    agree = float((tokens_ours == tokens_peer).mean()) if len(tokens_peer) == n else float("nan")
    print(
        f"HuBERT base (random weights), layer {args.layer}, {clusters} clusters, "
        f"{args.seconds:.0f} s of 16 kHz speech -> {n} tokens; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"| {'implementation':58} | {'seconds':>7} | {'tokens/s':>8} | {'x realtime':>10} |")
    print(f"|{'-' * 60}|{'-' * 9}|{'-' * 10}|{'-' * 12}|")
    for name, t in (
        ("cadence HubertKMeansTokenizer", t_ours),
        ("transformers.HubertModel(output_hidden_states) + sklearn", t_peer),
    ):
        print(f"| {name:58} | {t:7.2f} | {n / t:8.0f} | {args.seconds / t:10.1f} |")
    print(f"speed ratio (peer time / ours): {t_peer / t_ours:.2f}x; tokens identical: {agree:.4%}")


if __name__ == "__main__":
    main()
