"""Classifier-free guidance the pipelines use unless told otherwise (a light module: the
command line reads these for its defaults without importing the models).

By default every SoundStorm and flow matcher Cadence trains drops its condition part of
the time (``cond_drop_prob``; the recipes keep it), so each also holds the unconditional
model guidance needs.
"""

__all__ = ["FLOW_GUIDANCE", "SOUNDSTORM_GUIDANCE", "SOUNDSTORM_GUIDED_LEVELS", "soundstorm_scales"]

# SoundStorm in continuation and voice conversion. Guidance makes the codes follow the
# semantic tokens more closely. Measured on the shipped toy pipeline's 40 held-out
# utterances (ground-truth semantic tokens, 3 s prompt; mean of seeds 0 and 1), the
# recognizer's PER is 12.1% at 1 (off), 10.0% at 1.5 and 9.8% at 2; past 3.5 it rises again
# (10.1% at 5) and speaker similarity falls. Voice conversion goes from 22.2% to 15.3% at 2.
# The price: each pass runs the conditional and unconditional rows, twice the batch.
SOUNDSTORM_GUIDANCE = 2.0

# ... on its coarsest levels only, where the content is decided; the finer levels (one greedy
# pass each) run the conditional rows alone, half the batch. Same 40 utterances, guidance 2,
# mean of seeds 0 and 1, guiding the first 8 (all) / 3 / 2 / 1 levels: SoundStorm's PER
# 9.8% / 9.75% / 9.8% / 10.3% (speaker similarity 0.928 / 0.926 / 0.926 / 0.926); voice
# conversion's PER 16.3% / 16.1% / 17.0% / -.
SOUNDSTORM_GUIDED_LEVELS = 3


def soundstorm_scales(scale: float, num_quantizers: int) -> tuple[float, ...]:
    """SoundStorm's per-level ``guidance_scale`` for the pipelines' ``scale``: ``scale`` on
    the first :data:`SOUNDSTORM_GUIDED_LEVELS` levels, 1 (off) on the others."""
    guided = min(SOUNDSTORM_GUIDED_LEVELS, num_quantizers)
    return (float(scale),) * guided + (1.0,) * (num_quantizers - guided)


# The flow matcher in voice conversion: off. On the same 40 utterances guidance only hurt
# it: PER 10.9% at 1, 11.4% at 1.5, 13.9% at 2 (speaker similarity 0.825, 0.818, 0.811).
FLOW_GUIDANCE = 1.0
