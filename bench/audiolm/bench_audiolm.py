"""cadence-audiolm vs audiolm-pytorch 2.4.0: sampling ms/token (KV cache on and off) and training tokens/s.

Same configuration for both: dim 256, depth 4, heads 8 (64 per head, audiolm-pytorch's
default), 500 semantic tokens, codebook 1024, 3 coarse + 5 fine quantizers, CPU, random
weights, batch 1 for sampling. Run from the repository root with the bench venv
(see bench/audiolm/README.md):

    /work/bench-envs/audiolm/bin/python bench/audiolm/bench_audiolm.py [--threads 2]

audiolm-pytorch's package __init__ imports torchaudio, encodec and fairseq paths that do
not install with current torch; the transformer module only needs a few names from them, so
the script registers small stand-ins for those modules (codec / HuBERT / T5 classes that the
benchmark never calls) before importing ``audiolm_pytorch.audiolm_pytorch``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch

DIM, DEPTH, HEADS, DIM_HEAD = 256, 4, 8, 64
SEMANTIC, CODEBOOK, COARSE_Q, FINE_Q = 500, 1024, 3, 5


def load_peer():
    """Import audiolm_pytorch's transformer module with stand-ins for its codec/HuBERT imports."""
    spec = importlib.util.find_spec("audiolm_pytorch")
    if spec is None:
        raise SystemExit(
            "audiolm-pytorch is not installed in this interpreter; see bench/audiolm/README.md"
        )
    root = Path(spec.origin).parent

    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    class SoundStream:  # never built; CoarseTransformerWrapper reads rq_groups / num_quantizers
        rq_groups = 1
        num_quantizers = COARSE_Q + FINE_Q
        seq_len_multiple_of = 320

    package = stub("audiolm_pytorch")
    package.__path__ = [str(root)]
    stub("torchaudio", functional=stub("torchaudio.functional", resample=lambda *a, **k: None))
    stub("audiolm_pytorch.soundstream", SoundStream=SoundStream)
    stub("audiolm_pytorch.encodec", EncodecWrapper=type("EncodecWrapper", (), {}))
    stub("audiolm_pytorch.vq_wav2vec", FairseqVQWav2Vec=type("FairseqVQWav2Vec", (), {}))
    stub("audiolm_pytorch.hubert_kmeans", HubertWithKmeans=type("HubertWithKmeans", (), {}))
    stub(
        "audiolm_pytorch.t5",
        t5_encode_text=lambda *a, **k: None,
        get_encoded_dim=lambda name: 768,
        DEFAULT_T5_NAME="t5-base",
    )
    import audiolm_pytorch.audiolm_pytorch as peer

    return peer, SoundStream()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peer, codec = load_peer()
    from cadence.audiolm import (
        CoarseTransformer,
        CoarseTransformerConfig,
        FineTransformer,
        FineTransformerConfig,
        SamplingOptions,
        SemanticTransformer,
        SemanticTransformerConfig,
        stage_step,
    )

    torch.manual_seed(0)
    size = dict(dim=DIM, depth=DEPTH, heads=HEADS, dim_head=DIM_HEAD)
    ours = {
        "semantic": SemanticTransformer(SemanticTransformerConfig(**size, codebook_size=SEMANTIC)),
        "coarse": CoarseTransformer(
            CoarseTransformerConfig(
                **size,
                semantic_codebook_size=SEMANTIC,
                codebook_size=CODEBOOK,
                num_coarse_quantizers=COARSE_Q,
            )
        ),
        "fine": FineTransformer(
            FineTransformerConfig(
                **size,
                codebook_size=CODEBOOK,
                num_coarse_quantizers=COARSE_Q,
                num_fine_quantizers=FINE_Q,
            )
        ),
    }
    psize = dict(dim=DIM, depth=DEPTH, heads=HEADS)
    theirs = {
        "semantic": peer.SemanticTransformerWrapper(
            transformer=peer.SemanticTransformer(num_semantic_tokens=SEMANTIC, **psize),
            unique_consecutive=False,
        ),
        "coarse": peer.CoarseTransformerWrapper(
            transformer=peer.CoarseTransformer(
                num_semantic_tokens=SEMANTIC,
                codebook_size=CODEBOOK,
                num_coarse_quantizers=COARSE_Q,
                **psize,
            ),
            codec=codec,
            unique_consecutive=False,
        ),
        "fine": peer.FineTransformerWrapper(
            transformer=peer.FineTransformer(
                num_coarse_quantizers=COARSE_Q,
                num_fine_quantizers=FINE_Q,
                codebook_size=CODEBOOK,
                **psize,
            ),
            codec=codec,
        ),
    }
    for model in [*ours.values(), *theirs.values()]:
        model.to(device).eval()
    # the peer's samplers draw tqdm bars per token; silence them so they do not cost time
    peer.tqdm = lambda iterable, **_: iterable

    g = torch.Generator().manual_seed(0)
    sem_frames, coarse_frames, fine_frames = 96, 48, 24
    semantic_in = torch.randint(0, SEMANTIC, (1, coarse_frames), generator=g).to(device)
    coarse_in = torch.randint(0, CODEBOOK, (1, fine_frames, COARSE_Q), generator=g).to(device)
    sample = dict(temperature=1.0)

    def ours_sampling(cache: bool, top_k: int, allow_eos: bool = False) -> SamplingOptions:
        return SamplingOptions(temperature=1.0, top_k=top_k, use_cache=cache, allow_eos=allow_eos)

    rows = []
    for cache in (True, False):
        scale = 1 if cache else 4  # fewer tokens without the cache (it is quadratic)
        n_sem, n_coarse, n_fine = sem_frames // scale, coarse_frames // scale, fine_frames // scale
        cases = {
            "semantic": (
                n_sem,
                lambda n=n_sem, cache=cache: ours["semantic"].generate(
                    batch_size=1, max_frames=n, sampling=ours_sampling(cache, SEMANTIC // 10)
                ),
                lambda n=n_sem, cache=cache: theirs["semantic"].generate(
                    max_length=n, batch_size=1, use_kv_cache=cache, **sample
                ),
            ),
            "coarse": (
                n_coarse * COARSE_Q,
                lambda n=n_coarse, cache=cache: ours["coarse"].generate(
                    semantic_in[:, :n], max_frames=n, sampling=ours_sampling(cache, CODEBOOK // 10)
                ),
                lambda n=n_coarse, cache=cache: theirs["coarse"].generate(
                    semantic_token_ids=semantic_in[:, :n],
                    max_time_steps=n,
                    use_kv_cache=cache,
                    **sample,
                ),
            ),
            "fine": (
                n_fine * FINE_Q,
                lambda n=n_fine, cache=cache: ours["fine"].generate(
                    coarse_in[:, :n], sampling=ours_sampling(cache, CODEBOOK // 10)
                ),
                lambda n=n_fine, cache=cache: theirs["fine"].generate(
                    coarse_token_ids=coarse_in[:, :n], use_kv_cache=cache, **sample
                ),
            ),
        }
        for stage, (tokens, ours_fn, theirs_fn) in cases.items():
            t_ours = timed(ours_fn, args.repeats) / tokens * 1e3
            t_theirs = timed(theirs_fn, args.repeats) / tokens * 1e3
            rows.append(
                (
                    f"{stage} sample, cache {'on' if cache else 'off'}",
                    "ms/token",
                    t_ours,
                    t_theirs,
                    t_theirs / t_ours,
                )
            )

    # training throughput: forward + backward + AdamW step over predicted tokens (ours: the
    # model's predictions and the train step's loss, as the Trainer runs them)
    batch, frames = 4, 48
    g = torch.Generator().manual_seed(1)
    sem = torch.randint(0, SEMANTIC, (batch, frames), generator=g).to(device)
    codes = torch.randint(0, CODEBOOK, (batch, frames, COARSE_Q + FINE_Q), generator=g).to(device)
    full = torch.full((batch,), frames, device=device)
    train_cases = {
        "semantic": (
            batch * frames,
            lambda: stage_step(ours["semantic"], {"tokens": sem, "tokens_lengths": full}).loss,
            lambda: theirs["semantic"](semantic_token_ids=sem, return_loss=True),
        ),
        "coarse": (
            batch * frames * COARSE_Q,
            lambda: (
                stage_step(
                    ours["coarse"],
                    {
                        "semantic": sem,
                        "semantic_lengths": full,
                        "codes": codes[..., :COARSE_Q],
                        "codes_lengths": full,
                    },
                ).loss
            ),
            lambda: theirs["coarse"](
                semantic_token_ids=sem, coarse_token_ids=codes[..., :COARSE_Q], return_loss=True
            ),
        ),
        "fine": (
            batch * frames * FINE_Q,
            lambda: (
                stage_step(
                    ours["fine"],
                    {
                        "coarse": codes[..., :COARSE_Q],
                        "fine": codes[..., COARSE_Q:],
                        "coarse_lengths": full,
                    },
                ).loss
            ),
            lambda: theirs["fine"](
                coarse_token_ids=codes[..., :COARSE_Q],
                fine_token_ids=codes[..., COARSE_Q:],
                return_loss=True,
            ),
        ),
    }
    for stage, (tokens, ours_loss, theirs_loss) in train_cases.items():
        results = []
        for name, loss_fn in (("ours", ours_loss), ("theirs", theirs_loss)):
            model = (ours if name == "ours" else theirs)[stage]
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(loss_fn=loss_fn, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                loss_fn().backward()
                optimizer.step()

            results.append(tokens / timed(step, args.repeats))
            model.eval()
        rows.append((f"{stage} train", "tokens/s", results[0], results[1], results[0] / results[1]))

    print(
        f"\ncadence-audiolm vs audiolm-pytorch 2.4.0 | device {device} | threads {args.threads} | "
        f"dim {DIM} depth {DEPTH} heads {HEADS} | median of {args.repeats}"
    )
    print(f"{'measure':32s} {'unit':9s} {'cadence':>10s} {'audiolm-pytorch':>16s} {'speed-up':>9s}")
    for name, unit, a, b, ratio in rows:
        print(f"{name:32s} {unit:9s} {a:10.2f} {b:16.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
