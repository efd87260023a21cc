"""Stand-in for audiolm-pytorch in the benchmark venv only.

soundstorm-pytorch imports SoundStream / HubertWithKmeans / FairseqVQWav2Vec from
audiolm-pytorch at module level, and audiolm-pytorch imports torchaudio, which has no wheel
for torch 2.15. The benchmark builds SoundStorm without a codec or a tokenizer, so these
names are only used in type annotations; empty classes satisfy them.
"""


class SoundStream:
    pass


class HubertWithKmeans:
    pass


class FairseqVQWav2Vec:
    pass
