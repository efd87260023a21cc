"""Writes tests/data/checkpoints_v1: tiny models of every Cadence class, saved by checkpoint format 1."""
import sys, torch
from pathlib import Path
out = Path(sys.argv[1])
torch.manual_seed(0)
from cadence.codec import SoundStream, SoundStreamConfig, EnCodec, EnCodecConfig
from cadence.audiolm import SemanticTransformer, SemanticTransformerConfig, CoarseTransformer, CoarseTransformerConfig, FineTransformer, FineTransformerConfig
from cadence.soundstorm import SoundStorm, SoundStormConfig
from cadence.naturalspeech2 import NaturalSpeech2, NaturalSpeech2Config
from cadence.flowmatching import HierarchicalConditionalFlowMatcher, HierarchicalFlowMatcherConfig
from cadence.semantic import MFCCKMeansTokenizer, MFCCKMeansTokenizerConfig
from cadence.pipeline.recognizer import PhonemeRecognizer, PhonemeRecognizerConfig
from cadence.naturalspeech2.text import SPECIAL_SYMBOLS
models = {
    "soundstream": SoundStream(SoundStreamConfig.tiny()),
    "encodec": EnCodec(EnCodecConfig.tiny()),
    "semantic_transformer": SemanticTransformer(SemanticTransformerConfig.tiny(cond_drop_prob=0.2)),
    "coarse_transformer": CoarseTransformer(CoarseTransformerConfig.tiny()),
    "fine_transformer": FineTransformer(FineTransformerConfig.tiny()),
    "soundstorm": SoundStorm(SoundStormConfig.tiny(prompt_range=(0.1, 0.5), cond_drop_prob=0.2)),
    "naturalspeech2": NaturalSpeech2(NaturalSpeech2Config.tiny(dim=32, wavenet_channels=32, num_query_tokens=4, phonemes=SPECIAL_SYMBOLS + ("a", "b", "k"), cfg_drop_prob=0.2, lambda_ce_rvq=0.3)),
    "flowmatching": HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny()),
    "mfcc_tokenizer": MFCCKMeansTokenizer(MFCCKMeansTokenizerConfig.tiny()),
    "phoneme_recognizer": PhonemeRecognizer(PhonemeRecognizerConfig.tiny(["a", "b", "k"])),
}
for name, model in models.items():
    model.save_pretrained(out / name)
    from cadence.core.checkpoint import halve_weights
    halve_weights(out / name)
    print(name, sum(p.numel() for p in model.parameters()))
