"""Cadence flow matching: SpeechGPT-Gen's perceptual model, conditional flow matching from semantic to acoustic."""
