"""Cadence pipelines: the packages composed into speech continuation, voice conversion and TTS."""
