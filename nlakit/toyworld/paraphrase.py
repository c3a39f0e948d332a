"""The oracle's rewording of a toy-world explanation: the same claims, other words.

`paraphrase(text, rng)` parses each line of an explanation the way the oracle
writes it (`oracle.py`: the genre line, the context line, the final-token line)
and re-renders it with another of the oracle's frames and another alias of every
stated value (`labels.py`), copying quoted text and entity names. It states only
what the original stated, so the truth of every claim (`truth.score_claims`) is
unchanged; a line it cannot parse is kept verbatim. Used by the steganography
probes (`nlakit.eval.stego`) as an exact, offline paraphraser.
"""

from __future__ import annotations

import random
import re

from nlakit.toyworld import oracle
from nlakit.toyworld.labels import CONTINUATIONS, GENRE_NAMES, ROLES, SECTIONS, TONE_WORDS, TOPICS

# What the oracle appends to a role (`oracle._flags`).
FLAGS = (
    "right after a number",
    "within quotation marks",
    "within a code string",
    "last on its line",
)


def _alternation(aliases) -> str:
    return "(?:" + "|".join(re.escape(a) for a in sorted(set(aliases), key=len, reverse=True)) + ")"


def _frame_regex(frame: str, slots: dict[str, str]) -> re.Pattern:
    """An oracle frame (`"{G}: how to make {E} {T}."`) as an anchored, case-insensitive
    regex whose named groups capture the slots."""
    parts = re.split(r"\{(\w+)\}", frame)
    body = "".join(
        f"(?P<{part}>{slots[part]})" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{body}$", re.IGNORECASE)


def _lookup(table: dict, alias: str) -> str | None:
    """The value one of whose aliases is `alias` (case-insensitive)."""
    return next(
        (v for v, aliases in table.items() if alias.lower() in map(str.lower, aliases)), None
    )


def _other(rng: random.Random, options, current: str) -> str:
    """A random option other than `current` (case-insensitive), else `current`."""
    others = [o for o in options if o.lower() != current.lower()]
    return rng.choice(others) if others else current


_TONES = {w: tone for tone, words in TONE_WORDS.items() for w in words}


def _genre_regexes() -> list[tuple[str, int, re.Pattern]]:
    """(genre, frame index, regex) of every genre-line frame of the oracle."""
    out = []
    for genre, frames in oracle._GENRE_LINES.items():
        slots = {
            "G": _alternation(GENRE_NAMES[genre]),
            "T": _alternation(a for aliases in TOPICS[genre].values() for a in aliases),
            "E": ".+?",
            "tone": _alternation(_TONES),
            "a_tone": "an? " + _alternation(_TONES),
        }
        out += [(genre, i, _frame_regex(f, slots)) for i, f in enumerate(frames)]
    return out


_GENRE_RES = _genre_regexes()
_CONTEXT_SLOTS = {"S": _alternation(a for v in SECTIONS.values() for a in v), "C": ".*?"}
_CONTEXT_RES = [_frame_regex(f, _CONTEXT_SLOTS) for f in oracle._CONTEXT_LINES]
_NEXT_RES = [
    _frame_regex(f, {"N": _alternation(a for v in CONTINUATIONS.values() for a in v)})
    for f in oracle._NEXT_LINES
]
_TOKEN_SLOTS = {
    "K": ".*?",
    "R": _alternation(a for v in ROLES.values() for a in v),
    "F": "(?:, " + _alternation(FLAGS) + ")*",
}
# The role sentence, then optionally what follows it on the same line.
_TOKEN_RES = [
    re.compile(_frame_regex(f, _TOKEN_SLOTS).pattern[:-1] + r"(?: (?P<rest>.*))?$", re.I)
    for f in oracle._TOKEN_LINES
]


def _reframe(rng: random.Random, frames, index: int, allowed=None) -> str:
    """Another frame than `frames[index]` among the `allowed` indices, else the same."""
    allowed = range(len(frames)) if allowed is None else allowed
    return frames[rng.choice([i for i in allowed if i != index] or [index])]


def _reword_genre(line: str, rng: random.Random) -> str | None:
    """The genre line in another frame and aliases; None when it is not one."""
    for genre, index, regex in _GENRE_RES:
        m = regex.match(line)
        if m is None:
            continue
        frames = oracle._GENRE_LINES[genre]
        has_tone = "tone" in frames[index]  # {tone} or {a_tone}
        same_slots = [i for i, f in enumerate(frames) if ("tone" in f) == has_tone]
        tone = ""
        if has_tone:
            word = (m.groupdict().get("tone") or m["a_tone"]).split()[-1]
            tone = _other(rng, TONE_WORDS[_TONES[word.lower()]], word)
        topic = _lookup(TOPICS[genre], m["T"])
        return _reframe(rng, frames, index, same_slots).format(
            G=_other(rng, GENRE_NAMES[genre], m["G"]),
            T=_other(rng, TOPICS[genre][topic], m["T"]),
            E=m["E"],
            tone=tone,
            a_tone=("an " if tone[:1] in "aeiou" else "a ") + tone,
        )
    return None


def _reword_context(line: str, rng: random.Random) -> str | None:
    for index, regex in enumerate(_CONTEXT_RES):
        m = regex.match(line)
        if m is not None:
            section = SECTIONS[_lookup(SECTIONS, m["S"])]
            frame = _reframe(rng, oracle._CONTEXT_LINES, index)
            return frame.format(S=_other(rng, section, m["S"]), C=m["C"])
    return None


def _reword_next(sentence: str, rng: random.Random) -> str | None:
    for index, regex in enumerate(_NEXT_RES):
        m = regex.match(sentence)
        if m is not None:
            kind = CONTINUATIONS[_lookup(CONTINUATIONS, m["N"])]
            frame = _reframe(rng, oracle._NEXT_LINES, index)
            return frame.format(N=_other(rng, kind, m["N"]))
    return None


def _reword_token(line: str, rng: random.Random) -> str | None:
    """The final-token line (role sentence, then what follows) reworded; a following
    sentence that does not parse is kept verbatim. None when the line is neither."""
    for index, regex in enumerate(_TOKEN_RES):
        m = regex.match(line)
        if m is None:
            continue
        role = ROLES[_lookup(ROLES, m["R"])]
        frame = _reframe(rng, oracle._TOKEN_LINES, index)
        head = frame.format(K=m["K"], R=_other(rng, role, m["R"]), F=m["F"])
        rest = m["rest"]
        return head if rest is None else f"{head} {_reword_next(rest, rng) or rest}"
    return _reword_next(line, rng)


def paraphrase(text: str, rng: random.Random) -> tuple[str, int, int]:
    """(paraphrase, lines reworded, non-empty lines) of a toy-world explanation.

    Each line is parsed as the oracle writes it — the genre line (genre, topic, entity,
    tone), the context line (section, quoted text), the final-token line (quoted token,
    role, flags; then what must follow) — and re-rendered with another of the oracle's
    frames and another alias of every stated value where one exists. Only the
    information the line stated is written back (a frame needing a tone is used only
    when a tone was stated); quoted text and entity names are copied. A line that does
    not parse is kept verbatim."""
    out, reworded, total = [], 0, 0
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            out.append(line)
            continue
        total += 1
        new = (
            _reword_genre(stripped, rng)
            or _reword_context(stripped, rng)
            or _reword_token(stripped, rng)
        )
        reworded += new is not None
        out.append(new if new is not None else line)
    return "\n".join(out), reworded, total
