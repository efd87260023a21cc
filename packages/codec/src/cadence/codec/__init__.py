"""Cadence codec: trainable SoundStream and ISTFTCodec, EnCodec loading official checkpoints, streaming, GAN training."""

from .balancer import Balancer
from .discriminators import (
    CodecDiscriminator,
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from .encodec import EnCodec, EnCodecConfig
from .encodec_loading import load_official, to_official_state_dict
from .hf_codecs import DacCodec, MimiCodec
from .hificodec import HiFiCodec, HiFiCodecConfig
from .istft_codec import ISTFTCodec, ISTFTCodecConfig
from .losses import (
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    waveform_l1_loss,
)
from .metrics import codec_metrics, mel_distance, pesq, si_snr, stft_distance, stoi
from .quantizer import CodeRangeError, QuantizedResult, QuantizerConfig, ResidualQuantizer
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from .soundstream import SoundStream, SoundStreamConfig, SoundStreamOutput
from .speechtokenizer import SpeechTokenizer, SpeechTokenizerConfig, SpeechTokenizerSemantic
from .speechtokenizer_acoustic import SpeechTokenizerAcoustic
from .streaming import (
    StreamableCodec,
    StreamingDecoder,
    StreamingEncoder,
    decode_chunked,
    decode_to_file,
    encode_chunked,
    encode_file,
    state_numel,
)
from .training import CodecTrainer, CodecTrainerConfig

__all__ = [
    "Balancer",
    "CodeRangeError",
    "CodecDiscriminator",
    "CodecTrainer",
    "CodecTrainerConfig",
    "DacCodec",
    "DiscriminatorConfig",
    "EnCodec",
    "EnCodecConfig",
    "HiFiCodec",
    "HiFiCodecConfig",
    "ISTFTCodec",
    "ISTFTCodecConfig",
    "MimiCodec",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleMelLoss",
    "MultiScaleSTFTDiscriminator",
    "QuantizedResult",
    "QuantizerConfig",
    "ResidualQuantizer",
    "SEANetConfig",
    "SEANetDecoder",
    "SEANetEncoder",
    "SoundStream",
    "SoundStreamConfig",
    "SoundStreamOutput",
    "SpeechTokenizer",
    "SpeechTokenizerAcoustic",
    "SpeechTokenizerConfig",
    "SpeechTokenizerSemantic",
    "StreamableCodec",
    "StreamingDecoder",
    "StreamingEncoder",
    "codec_metrics",
    "decode_chunked",
    "decode_to_file",
    "discriminator_adversarial_loss",
    "encode_chunked",
    "encode_file",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "load_official",
    "mel_distance",
    "pesq",
    "si_snr",
    "state_numel",
    "stft_distance",
    "stoi",
    "to_official_state_dict",
    "waveform_l1_loss",
]
