"""Cadence SoundStorm: Conformer with per-level MaskGIT decoding, prompting and voice conversion."""
