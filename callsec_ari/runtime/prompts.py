"""Which sound file plays a prompt, per language: configured overrides, dropped-in languages,
English for whatever a language lacks.

Flows name prompts as ``sound:callsec/<name>`` with the caller's language. Before a ``Play``
reaches Asterisk (ARI or FastAGI), :meth:`PromptBook.resolve` rewrites each such URI:

1. ``[prompts:<lang>] <name> = <sound>`` names a replacement (``custom/karte-bitte``: Asterisk's
   sounds dir, ``/abs/path``: that file; no extension, Asterisk picks the format);
2. else, when ``[prompts] sounds_dir`` is set (the Asterisk sounds dir as callsec sees it),
   a prompt missing from ``<sounds_dir>/<lang>/callsec/`` plays the English one
   (``sound:en/callsec/<name>``, or ``[prompts:en]``'s override) and a warning names the prompt;
3. else the URI is left alone (Asterisk looks in ``<lang>/callsec/`` itself).

A language is added by dropping ``<name>.<format>`` files into ``sounds/<lang>/callsec/`` of the
Asterisk (or of the source tree, which the wheel and ``install-assets`` package); calls started
with ``lang=<lang>`` then use them, without a restart (a language's listing is at most
:data:`RELIST_SECONDS` old). A language code that is not ``xx``/``xx_YY`` plays English.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

from callsec_ari.core import commands as c
from callsec_ari.core.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "sound:callsec/"
FALLBACK_LANGUAGE = "en"
LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z0-9]{2,8})?$")
PROMPT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: A sound name as Asterisk takes it: relative to its sounds dir or absolute, no extension.
SOUND = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*$")
#: How old a language's listing may get before the next prompt in it lists the dir again.
RELIST_SECONDS = 30.0
_EXTENSIONS = (".wav", ".gsm", ".ulaw", ".alaw", ".g722", ".sln", ".sln16", ".mp3", ".ogg")
_SOURCE_TEXTS = Path(__file__).resolve().parents[2] / "sounds" / "texts" / "en.txt"


def known_prompt_names() -> frozenset[str]:
    """The English prompts this callsec ships: from the packaged data (a wheel), else from the
    source tree's ``sounds/texts/en.txt``; empty when neither is there (names not checked)."""
    packaged = files("callsec_ari") / "data" / "sounds" / "en" / "callsec"
    if packaged.is_dir():
        return frozenset(item.name.split(".", 1)[0] for item in packaged.iterdir())
    if _SOURCE_TEXTS.is_file():
        lines = _SOURCE_TEXTS.read_text(encoding="utf-8").splitlines()
        return frozenset(line.split("|", 1)[0].strip() for line in lines
                         if "|" in line and not line.lstrip().startswith("#"))
    return frozenset()


def check_overrides(overrides: Mapping[str, Mapping[str, str]],
                    known: Iterable[str] | None = None) -> None:
    """``[prompts:<lang>]`` sections: a language code, known prompt names, sound names that
    Asterisk can take. :class:`ConfigError` names the section and key."""
    names = frozenset(known_prompt_names() if known is None else known)
    for lang, table in overrides.items():
        section = f"prompts:{lang}"
        if not LANGUAGE.match(lang):
            raise ConfigError("not a language code (en, de, fr, pt_BR ...)", section=section)
        for name, sound in table.items():
            if not PROMPT_NAME.match(name) or (names and name not in names):
                raise ConfigError("no prompt of that name (see sounds/texts/en.txt)",
                                  section=section, key=name)
            if not SOUND.match(sound) or ".." in sound.split("/"):
                raise ConfigError("expected a sound name such as custom/enter-card (relative"
                                  " to Asterisk's sounds dir) or an absolute path",
                                  section=section, key=name)
            if sound.lower().endswith(_EXTENSIONS):
                raise ConfigError("name the sound without its extension (Asterisk picks the"
                                  " format)", section=section, key=name)


def scan_sounds(sounds_dir: Path) -> dict[str, frozenset[str]]:
    """``{lang: prompt names}`` for every ``<sounds_dir>/<lang>/callsec/`` holding files."""
    found: dict[str, frozenset[str]] = {}
    if not sounds_dir.is_dir():
        log.warning("prompts: sounds_dir %s is not a directory; every language but English"
                    " plays English prompts", sounds_dir)
        return found
    for prompts in sorted(sounds_dir.glob("*/callsec")):
        names = _list(prompts)
        if names and LANGUAGE.match(prompts.parent.name):
            found[prompts.parent.name] = names
    return found


@dataclass
class PromptBook:
    """Resolves ``sound:callsec/<name>`` per language (see the module docstring)."""

    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: The sounds dir to look into; ``None``: prompts are left to Asterisk.
    sounds_dir: Path | None = None
    clock: Callable[[], float] = time.monotonic
    _listed: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, overrides: Mapping[str, Mapping[str, str]],
               sounds_dir: Path | None) -> PromptBook:
        book = cls(overrides=overrides, sounds_dir=sounds_dir)
        if sounds_dir is None:
            return book
        found = scan_sounds(sounds_dir)
        now = book.clock()
        book._listed.update({lang: (now, names) for lang, names in found.items()})
        log.info("prompts: languages in %s: %s", sounds_dir, ", ".join(sorted(found)) or "none")
        for lang, table in overrides.items():
            for name, sound in table.items():
                if not _sound_exists(sounds_dir, lang, sound):
                    log.warning("prompts: [prompts:%s] %s names %s, which is not in %s",
                                lang, name, sound, sounds_dir)
        return book

    def available(self, language: str) -> frozenset[str]:
        """The prompts ``<sounds_dir>/<language>/callsec/`` holds, listed again when the last
        listing is older than :data:`RELIST_SECONDS` (a language dropped in while running)."""
        assert self.sounds_dir is not None
        now = self.clock()
        listed = self._listed.get(language)
        if listed is None or now - listed[0] >= RELIST_SECONDS:
            listed = (now, _list(self.sounds_dir / language / "callsec"))
            self._listed[language] = listed
        return listed[1]

    def resolve(self, play: c.Play) -> tuple[c.Play, tuple[str, ...]]:
        """``play`` with its prompts mapped; and the names that fell back to English."""
        language = play.language if LANGUAGE.match(play.language or "") else FALLBACK_LANGUAGE
        missing: list[str] = []
        media = tuple(self._one(uri, language, missing) for uri in play.media)
        if media == play.media and language == play.language:
            return play, ()
        return replace(play, media=media, language=language), tuple(missing)

    def _one(self, uri: str, language: str, missing: list[str]) -> str:
        if not uri.startswith(PREFIX):
            return uri
        name = uri[len(PREFIX):]
        own = self.overrides.get(language, {}).get(name)
        if own is not None:
            return "sound:" + own
        if self.sounds_dir is None or language == FALLBACK_LANGUAGE \
                or name in self.available(language):
            return uri
        base = language.split("_", 1)[0]
        if base != language and name in self.available(base):
            return uri  # Asterisk tries pt before en for pt_BR
        missing.append(name)
        english = self.overrides.get(FALLBACK_LANGUAGE, {}).get(name)
        return "sound:" + (english or f"{FALLBACK_LANGUAGE}/callsec/{name}")


def _list(directory: Path) -> frozenset[str]:
    if not directory.is_dir():
        return frozenset()
    return frozenset(p.name.split(".", 1)[0] for p in directory.iterdir()
                     if p.is_file() and not p.name.startswith("."))


def _sound_exists(sounds_dir: Path, lang: str, sound: str) -> bool:
    candidates = [Path(sound)] if sound.startswith("/") else [
        sounds_dir / lang / sound, sounds_dir / sound, sounds_dir / FALLBACK_LANGUAGE / sound]
    return any(path.parent.is_dir() and any(path.parent.glob(path.name + ".*"))
               for path in candidates)
