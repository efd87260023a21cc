"""Cadence codec: trainable SoundStream, EnCodec loading official checkpoints, streaming, GAN training."""
