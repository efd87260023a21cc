"""Cadence codec: trainable SoundStream, EnCodec loading official checkpoints, streaming, GAN training."""

from .balancer import Balancer
from .discriminators import (
    CodecDiscriminator,
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from .losses import (
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    waveform_l1_loss,
)
from .metrics import codec_metrics, mel_distance, pesq, si_snr, stft_distance, stoi
from .quantizer import CodeRangeError, QuantizedResult, ResidualQuantizer
from .seanet import SEANetDecoder, SEANetEncoder
from .soundstream import SoundStream, SoundStreamConfig, SoundStreamOutput
from .training import CodecTrainer, CodecTrainerConfig

__all__ = [
    "Balancer",
    "CodeRangeError",
    "CodecDiscriminator",
    "CodecTrainer",
    "CodecTrainerConfig",
    "DiscriminatorConfig",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleMelLoss",
    "MultiScaleSTFTDiscriminator",
    "QuantizedResult",
    "ResidualQuantizer",
    "SEANetDecoder",
    "SEANetEncoder",
    "SoundStream",
    "SoundStreamConfig",
    "SoundStreamOutput",
    "codec_metrics",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "mel_distance",
    "pesq",
    "si_snr",
    "stft_distance",
    "stoi",
    "waveform_l1_loss",
]
