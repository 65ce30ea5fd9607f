"""Observables: the things an alert is about (users, hosts, IPs, hashes, domains, URLs)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Kind = Literal["user", "host", "ip", "hash", "domain", "url"]
KINDS: tuple[Kind, ...] = ("user", "host", "ip", "hash", "domain", "url")
_FIELDS: dict[Kind, str] = {
    "user": "users",
    "host": "hosts",
    "ip": "ips",
    "hash": "hashes",
    "domain": "domains",
    "url": "urls",
}


def account_name(user: str) -> str:
    """The bare account of ``DOMAIN\\user``, ``user@domain`` or ``user``, NFKC-normalised
    and case-folded (full-width ``ＣＯＲＰ＼Ａｌｉｃｅ`` is ``alice``)."""
    bare = unicodedata.normalize("NFKC", user).rsplit("\\", 1)[-1].split("@", 1)[0]
    return unicodedata.normalize("NFKC", bare.strip().casefold())


def account_skeleton(user: str) -> str:
    """What ``user`` looks like, for comparing against accounts that must never be touched:
    its account name without invisible characters or accents, with Cyrillic, Greek and
    small-capital letters that look Latin read as Latin: "ADMİNİSTRATOR", "Administrator"
    followed by a zero-width space, or spelt with a Cyrillic "а", and "administrator"
    share one skeleton. Only ever used to say "this is that account"."""
    letters = unicodedata.normalize("NFKD", account_name(user))
    kept = "".join(
        c for c in letters if not _invisible(c) and unicodedata.category(c) not in _MARKS
    )
    return unicodedata.normalize("NFKC", kept.translate(_LOOK_ALIKES)).casefold()


# Letters that, in some case, are drawn like a Latin one (after case folding).
_LOOK_ALIKES = str.maketrans(
    "авеікмнорстухѕһӏԁԛԝүјɡɑıȷɩαβεηικνορτυχγωϲϳᴀʙᴄᴅᴇɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢօսհոց",
    "abeikmhopctyxshldqwyjgaijiabenikvoptuxywcjabcdeghijklmnoprstuvwyzouhng",
)
# Letters and marks that draw nothing: Hangul fillers, the braille blank, the combining
# grapheme joiner, Khmer inherent vowels, Mongolian and other variation selectors.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")
_MARKS = frozenset({"Mn", "Me"})  # accents and enclosing marks drawn on another letter
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"})
_ALPHABETS = frozenset({"LATIN", "GREEK", "CYRILLIC"})  # their accented letters are precomposed
# Letters of these scripts are written together (Japanese, Chinese, Korean with Latin).
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    return (
        category in _INVISIBLE_CATEGORIES
        or (category == "Zs" and char != " ")
        or char in _BLANK
        or "\ufe00" <= char <= "\ufe0f"
        or "\U000e0100" <= char <= "\U000e01ef"
        or "\u180b" <= char <= "\u180f"
    )


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name; None for anything else."""
    if not unicodedata.category(char).startswith("L"):
        return None
    word = unicodedata.name(char, "").split(" ", 1)[0]
    if word in ("CJK", "IDEOGRAPHIC"):
        return "HAN"
    if word in ("MODIFIER", "KATAKANA-HIRAGANA", ""):
        return None  # shared by several scripts
    return word


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1
_CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps tab, newline


def control_character(value: str) -> str | None:
    """The first control character (C0, DEL, C1; NUL among them) in ``value``, or None."""
    found = _CONTROL.search(value)
    return found.group() if found else None


def without_control_characters(value: str) -> str:
    """``value`` with each control character but tab and newline replaced by U+FFFD, for
    free text only people read (a title); identifiers are refused instead."""
    return _CONTROL_BUT_LAYOUT.sub("\ufffd", value)


def unsafe_characters(value: str) -> str | None:
    """Why ``value`` must not be acted on — invisible, control or format characters
    (zero-width, bidi controls, soft hyphens, fillers), compatibility look-alikes
    (full-width, styled or ligature letters), combining marks left over on a Latin, Greek
    or Cyrillic letter ("a" with a strike-through), or letters of several scripts mixed
    (a Cyrillic "а" among Latin letters) — or None when it reads as what it is."""
    for char in value:
        if _invisible(char):
            return f"holds an invisible or control character (U+{ord(char):04X})"
    for char in value:
        if unicodedata.normalize("NFKC", char) != unicodedata.normalize("NFC", char):
            return f"holds a look-alike compatibility character (U+{ord(char):04X})"
    base = None
    for char in unicodedata.normalize("NFC", value):
        if unicodedata.category(char) not in _MARKS:
            base = _script(char)
        elif base in _ALPHABETS:  # a stroke or dot no letter of its alphabet is drawn with
            return f"holds a combining mark that composes with no letter (U+{ord(char):04X})"
    scripts = {script for c in value if (script := _script(c))}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        names = " and ".join(sorted(s.title() for s in scripts))
        return f"mixes {names} letters"
    return None


_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX = frozenset("0123456789abcdefABCDEF")


def hash_type(value: str) -> str | None:
    """``md5``, ``sha1`` or ``sha256`` by length, for a hex string; else None."""
    if not set(value) <= _HEX:
        return None
    return _HASH_LENGTHS.get(len(value))


class Observables(BaseModel):
    """Distinct values by kind (order of first appearance kept), plus their roles.

    ``ips`` holds every IP; ``src_ips`` and ``dst_ips`` say which were the source or the
    destination. ``hash_types`` labels each hash (md5, sha1, sha256). ``processes`` and
    ``files`` carry process and file names where the detector gives them.

    ``observers`` names the devices that saw or reported the alert rather than took part
    in it: an IDS sensor, a firewall, a SIEM's manager. They are shown and kept, but are
    no kind: never looked up, never a correlation or suppression key — every alert a
    sensor raises would share its name, and incidents join on a shared host.
    """

    users: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    hashes: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    src_ips: list[str] = Field(default_factory=list)
    dst_ips: list[str] = Field(default_factory=list)
    processes: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    observers: list[str] = Field(default_factory=list)
    hash_types: dict[str, str] = Field(default_factory=dict)

    @field_validator(
        "users",
        "hosts",
        "ips",
        "hashes",
        "domains",
        "urls",
        "src_ips",
        "dst_ips",
        "processes",
        "files",
        "observers",
        mode="after",
    )
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for value in values:
            value = value.strip()
            if value:
                seen.setdefault(value, None)
        return list(seen)

    @model_validator(mode="after")
    def _roles_and_labels(self) -> Observables:
        for ip in self.src_ips + self.dst_ips:
            if ip not in self.ips:
                self.ips.append(ip)
        self.hash_types = {h: label for h in self.hashes if (label := hash_type(h)) is not None}
        return self

    def of(self, kind: Kind) -> list[str]:
        return list(getattr(self, _FIELDS[kind]))

    def items(self) -> Iterator[tuple[Kind, str]]:
        for kind in KINDS:
            for value in self.of(kind):
                yield kind, value

    def merge(self, other: Observables) -> Observables:
        lists = (
            "users",
            "hosts",
            "ips",
            "hashes",
            "domains",
            "urls",
            "src_ips",
            "dst_ips",
            "processes",
            "files",
            "observers",
        )
        return Observables(**{f: getattr(self, f) + getattr(other, f) for f in lists})

    def is_empty(self) -> bool:
        return not any(True for _ in self.items())

    @staticmethod
    def key(kind: Kind, value: str) -> str:
        """The key enrichment facts are filed under, e.g. ``user:alice``."""
        return f"{kind}:{value}"
