"""Cadence NaturalSpeech 2: zero-shot TTS by latent diffusion over codec latents."""
