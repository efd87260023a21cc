"""Command line: ``cadence-toy-corpus OUT_DIR`` (also ``python -m cadence.corpus``).

Examples::

    cadence-toy-corpus data/toy --num-utterances 400 --seed 0
    cadence-toy-corpus --summary-only tests/data/toy_speech
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cadence.corpus.generate import (
    DEFAULT_VARIANTS,
    DEFAULT_VOICES,
    generate_corpus,
    summarize_corpus,
)
from cadence.naturalspeech2.espeak import EspeakError, EspeakNotFoundError

__all__ = ["build_parser", "main"]


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cadence-toy-corpus``."""
    parser = argparse.ArgumentParser(
        prog="cadence-toy-corpus",
        description=(
            "Synthesize a small multi-speaker English speech corpus offline with espeak-ng: "
            "16-bit FLAC plus train/valid JSON-lines manifests with text and timed IPA "
            "phonemes, split by speaker. Deterministic given --seed."
        ),
    )
    parser.add_argument("out_dir", help="directory to write (or, with --summary-only, to read)")
    parser.add_argument(
        "--num-utterances", type=int, default=200, help="total utterances (default 200)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument(
        "--voices",
        type=_names,
        default=list(DEFAULT_VOICES),
        help=f"comma-separated espeak-ng voices (default {','.join(DEFAULT_VOICES)})",
    )
    parser.add_argument(
        "--variants",
        type=_names,
        default=list(DEFAULT_VARIANTS),
        help=f"comma-separated espeak-ng variants, one speaker per voice x variant "
        f"(default {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument(
        "--valid-speakers",
        type=int,
        default=None,
        help="speakers held out for valid.jsonl (default: about 15%%, at least 1)",
    )
    parser.add_argument(
        "--num-sentences",
        type=int,
        default=None,
        help="distinct sentences: the built-in ones, then seeded template sentences up to this "
        "many (default: the built-in ones only)",
    )
    parser.add_argument(
        "--held-out-sentences",
        type=int,
        default=0,
        help="sentences only the held-out speakers say, so valid.jsonl has new speakers and "
        "new sentences (default 0: shared)",
    )
    parser.add_argument(
        "--sample-rate", type=int, default=16000, help="output rate in Hz (default 16000)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing corpus in out_dir"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="generate nothing: print the summary of the corpus already in out_dir",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` when None.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.summary_only:
            summary = summarize_corpus(args.out_dir)
        else:
            summary = generate_corpus(
                args.out_dir,
                num_utterances=args.num_utterances,
                voices=args.voices,
                variants=args.variants,
                seed=args.seed,
                sample_rate=args.sample_rate,
                valid_speakers=args.valid_speakers,
                num_sentences=args.num_sentences,
                held_out_sentences=args.held_out_sentences,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
    except (
        EspeakNotFoundError,
        EspeakError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"cadence-toy-corpus: error: {err}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
