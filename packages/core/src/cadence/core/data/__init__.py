"""Data: audio datasets, batching, and precomputed code / token / latent shards."""

from .collate import collate_audio, collate_sequences, lengths_to_mask, pad_sequences
from .dataset import AudioDataset, ScanReport
from .precompute import precompute
from .shards import (
    FieldSpec,
    ShardError,
    ShardFormatError,
    ShardMismatchError,
    ShardReader,
    ShardWriter,
    smallest_int_dtype,
    write_manifest,
)

__all__ = [
    "AudioDataset",
    "FieldSpec",
    "ScanReport",
    "ShardError",
    "ShardFormatError",
    "ShardMismatchError",
    "ShardReader",
    "ShardWriter",
    "collate_audio",
    "collate_sequences",
    "lengths_to_mask",
    "pad_sequences",
    "precompute",
    "smallest_int_dtype",
    "write_manifest",
]
