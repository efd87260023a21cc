"""A small ctypes binding to libespeak-ng: text -> 16-bit audio plus timed IPA phonemes.

NaturalSpeech 2's G2P (:func:`cadence.naturalspeech2.text.phonemize`) reads the phoneme
events; the toy-corpus synthesizer uses the audio and the event times too, so the binding
keeps everything both need: initialization, voice selection, a few prosody parameters and
synchronous synthesis with phoneme events in IPA. The library keeps global state (one
voice, one parameter set, one callback per process), so every call goes through one
lock-guarded engine.

Where the library comes from, in order:

1. ``CADENCE_ESPEAK_LIBRARY`` (a path to ``libespeak-ng``), for unusual installs;
2. the ``espeakng-loader`` wheel (a dependency of ``cadence-naturalspeech2``), whose
   bundled ``espeak-ng-data`` is passed to ``espeak_Initialize``;
3. the system library (``apt-get install espeak-ng``), with its compiled-in data path.

The struct layouts and constants below mirror ``espeak-ng/speak_lib.h``.
"""

from __future__ import annotations

import _ctypes
import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "NATIVE_SAMPLE_RATE",
    "EspeakError",
    "EspeakLibrary",
    "EspeakNotFoundError",
    "Phoneme",
    "Synthesis",
    "espeak_available",
    "espeak_info",
    "find_espeak",
    "synthesize",
]

#: The rate every non-mbrola espeak-ng voice synthesizes at.
NATIVE_SAMPLE_RATE = 22050

_INSTALL_HINT = (
    "install it with `pip install espeakng-loader` (bundles libespeak-ng) "
    "or `apt-get install espeak-ng`, or point CADENCE_ESPEAK_LIBRARY at libespeak-ng"
)

# --- speak_lib.h ---------------------------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: no playback thread, callback inside Synth
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002  # phoneme events carry IPA (UTF-8) instead of ASCII mnemonics
_INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data directory calls exit(1)
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
# espeak_PARAMETER (the others keep the defaults espeak_Initialize sets)
_RATE, _PITCH, _RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),  # phoneme events: up to 8 bytes of UTF-8, maybe no NUL
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the input text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this espeak_Synth call
        ("sample", ctypes.c_int),  # same instant, in samples at the native rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakNotFoundError(RuntimeError):
    """No usable libespeak-ng was found on this machine."""


class EspeakError(RuntimeError):
    """libespeak-ng refused a request (unknown voice, failed synthesis, bad data path)."""


@dataclass(frozen=True)
class Phoneme:
    """One phoneme event: its IPA symbol and when it starts.

    Attributes:
        symbol: IPA string as espeak-ng writes it (may include a stress or length mark).
        start: start time in seconds from the beginning of the synthesized audio.
    """

    symbol: str
    start: float


@dataclass
class Synthesis:
    """The output of :func:`synthesize`.

    Attributes:
        samples: mono int16 samples at ``sample_rate``.
        sample_rate: the library's native rate (22050 Hz for the standard voices).
        phonemes: phoneme events in order, start times non-decreasing.
        text: the text that was spoken.
        voice: the espeak-ng voice name used, e.g. ``"en-us+f3"``.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: list[Phoneme] = field(default_factory=list)
    text: str = ""
    voice: str = ""

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.samples) / self.sample_rate

    def as_float(self) -> np.ndarray:
        """Samples as float32 in [-1, 1)."""
        return self.samples.astype(np.float32) / 32768.0


@dataclass(frozen=True)
class EspeakLibrary:
    """Where libespeak-ng was found.

    Attributes:
        library: path or soname to ``dlopen``.
        data_path: the ``espeak-ng-data`` directory to pass to ``espeak_Initialize``, or
            None for the library's compiled-in default.
        source: ``"env"`` (CADENCE_ESPEAK_LIBRARY), ``"espeakng-loader"`` or ``"system"``.
    """

    library: str
    data_path: str | None
    source: str


def find_espeak() -> EspeakLibrary:
    """Locate libespeak-ng (see the module docstring for the search order).

    Returns:
        The :class:`EspeakLibrary` to use.

    Raises:
        EspeakNotFoundError: nothing usable was found; the message says what to install.
    """
    env = os.environ.get("CADENCE_ESPEAK_LIBRARY")
    if env:
        if not Path(env).exists():
            raise EspeakNotFoundError(
                f"CADENCE_ESPEAK_LIBRARY={env} does not exist; {_INSTALL_HINT}"
            )
        return EspeakLibrary(env, os.environ.get("ESPEAK_DATA_PATH"), "env")
    try:
        import espeakng_loader
    except ImportError:
        pass
    else:
        library = espeakng_loader.get_library_path()
        if Path(library).exists():
            return EspeakLibrary(library, espeakng_loader.get_data_path(), "espeakng-loader")
    for name in (ctypes.util.find_library("espeak-ng"), "libespeak-ng.so.1", "libespeak-ng.dylib"):
        if not name:
            continue
        try:
            probe = ctypes.CDLL(name)
        except OSError:
            continue
        # Unload again: a reference left open would keep the library's statics alive
        # between syntheses (see _Engine).
        _unload(probe._handle)
        return EspeakLibrary(name, None, "system")
    raise EspeakNotFoundError(f"libespeak-ng not found; {_INSTALL_HINT}")


def espeak_available() -> bool:
    """Whether :func:`synthesize` can work here (a library is found and initializes)."""
    try:
        _engine()
    except (EspeakNotFoundError, EspeakError, OSError):
        return False
    return True


class _Library:
    """One loaded and initialized copy of libespeak-ng; use under the engine's lock only."""

    def __init__(self, located: EspeakLibrary, callback: _ctypes.CFuncPtr) -> None:
        self.lib = ctypes.CDLL(located.library)
        _declare(self.lib)
        data = located.data_path.encode() if located.data_path else None
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options)
        if not 0 < rate <= 200_000:
            self.close()
            raise EspeakError(
                f"espeak_Initialize failed (returned {rate}) for {located.library} "
                f"with data {located.data_path or '<built-in>'}; {_INSTALL_HINT}"
            )
        self.sample_rate = int(rate)
        path = ctypes.c_char_p()
        self.version = self.lib.espeak_Info(ctypes.byref(path)).decode()
        self.lib.espeak_SetSynthCallback(callback)

    def close(self) -> None:
        """Terminate and unload, so that the next load starts from pristine static state."""
        lib, self.lib = self.lib, None  # type: ignore[assignment]  # None once closed
        if lib is None:
            return
        lib.espeak_Terminate()
        handle = lib._handle
        del lib
        _unload(handle)


def _unload(handle: int) -> None:
    # dlclose on POSIX, FreeLibrary on Windows; both only drop one reference.
    close = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary  # type: ignore[attr-defined]  # Windows only
    close(handle)


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = ctypes.c_int


class _Engine:
    """Process-wide access to libespeak-ng, one synthesis at a time.

    libespeak-ng keeps synthesis state in C statics that survive ``espeak_Terminate`` (the
    pitch-flutter phase, the wave phase, automatic gain), so a second call with the same
    arguments sounds slightly different from the first. To make every call reproducible the
    library is loaded, initialized, used once and unloaded again (``dlclose``), a few
    milliseconds per utterance. If something else in the process holds the same library
    open, the unload is a no-op and calls are no longer independent of each other.
    """

    def __init__(self, located: EspeakLibrary) -> None:
        self.located = located
        self.lock = threading.Lock()
        # The callback object must outlive every synthesis: the library keeps its address.
        self._callback = _SynthCallback(self._on_audio)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int, int]] = []
        libc_name = ctypes.util.find_library("c")
        # espeak-ng < 1.52 draws breath noise from libc rand(); >= 1.52 has its own
        # generator seeded from time() at initialization. Both are reseeded per utterance.
        self._srand = getattr(ctypes.CDLL(libc_name), "srand", None) if libc_name else None
        library = _Library(located, self._callback)  # fail early, and learn rate and version
        self.sample_rate, self.version = library.sample_rate, library.version
        library.close()

    def _on_audio(self, wav, num_samples, events) -> int:  # type: ignore[no-untyped-def]
        # Called by the library from inside espeak_Synth; wav is NULL at the end of the text.
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                symbol = event.id.string.decode("utf-8", errors="replace")
                self._events.append((symbol, event.sample, event.audio_position))
            i += 1
        return 0  # 0 = keep going

    def synthesize(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int
    ) -> Synthesis:
        library = _Library(self.located, self._callback)
        try:
            lib = library.lib
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(
                    f"espeak-ng has no voice {voice!r}; list voices with `espeak-ng --voices=en` "
                    "and variants with `espeak-ng --voices=variant` (British English is 'en', "
                    "not 'en-gb')"
                )
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
                _check(lib.espeak_SetParameter(param, value, 0), f"espeak_SetParameter({param})")
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(seed)
            if self._srand is not None:
                self._srand(seed)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            status = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            _check(status, "espeak_Synth")
            _check(lib.espeak_Synchronize(), "espeak_Synchronize")
        finally:
            library.close()
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        phonemes = [Phoneme(s, self._event_seconds(n, ms)) for s, n, ms in events if s]
        return Synthesis(samples.astype(np.int16), self.sample_rate, phonemes, text, voice)

    def _event_seconds(self, sample: int, ms: int) -> float:
        # ``sample`` is exact; ``audio_position`` is the same instant truncated to whole ms.
        # Trust the sample count only while the two agree, in case a build leaves it unset.
        if abs(sample * 1000 / self.sample_rate - ms) <= 1.0:
            return sample / self.sample_rate
        return ms / 1000.0


def _check(status: int, what: str) -> None:
    if status != _EE_OK:
        raise EspeakError(f"{what} failed with espeak status {status}")


_engine_instance: _Engine | None = None
_engine_lock = threading.Lock()


def _engine() -> _Engine:
    global _engine_instance
    with _engine_lock:
        if _engine_instance is None:
            _engine_instance = _Engine(find_espeak())
        return _engine_instance


def espeak_info() -> dict[str, str | int]:
    """Version, source (``espeakng-loader``/``system``/``env``) and sample rate of the library.

    Raises:
        EspeakNotFoundError: no libespeak-ng on this machine.
    """
    engine = _engine()
    return {
        "version": engine.version,
        "source": engine.located.source,
        "sample_rate": engine.sample_rate,
    }


def synthesize(
    text: str,
    voice: str = "en-us",
    variant: str | None = None,
    *,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    seed: int = 0,
) -> Synthesis:
    """Speak ``text`` with espeak-ng and return the audio and timed IPA phonemes.

    Calls are deterministic: the same arguments give identical samples, whatever was
    synthesized before in the process.

    Args:
        text: UTF-8 text to speak (plain text, not SSML).
        voice: espeak-ng voice or language name, e.g. ``"en-us"``, ``"en-gb-x-rp"``.
        variant: optional voice variant, e.g. ``"f3"``, ``"m2"``, ``"klatt"``.
        rate: speaking rate in words per minute, 80..450.
        pitch: base pitch, 0..99 (50 is the voice's default).
        pitch_range: pitch variation, 0..99 (0 is monotone).
        seed: seed of the library's noise generator (breathy variants such as
            ``whisper`` use it).

    Returns:
        A :class:`Synthesis` with int16 samples at the native rate (22050 Hz).

    Raises:
        EspeakNotFoundError: no libespeak-ng on this machine.
        EspeakError: unknown voice or a failed synthesis.
        ValueError: empty text or parameters out of range.
    """
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    if not 0 <= pitch <= 99 or not 0 <= pitch_range <= 99:
        raise ValueError(f"pitch and pitch_range must be in 0..99, got {pitch}, {pitch_range}")
    if not 80 <= rate <= 450:
        raise ValueError(f"rate is in words per minute, 80..450, got {rate}")
    name = f"{voice}+{variant}" if variant else voice
    engine = _engine()
    with engine.lock:
        return engine.synthesize(text, name, rate, pitch, pitch_range, seed)
