"""Stand-in for spear-tts-pytorch in the benchmark venv only (see audiolm_pytorch/__init__.py)."""


class TextToSemantic:
    pass
