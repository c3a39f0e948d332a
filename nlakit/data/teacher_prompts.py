"""The teacher's explanation prompts, named and versioned.

    nlakit teach --data DIR --teacher SPEC --prompt structured

| name         | what the teacher is asked for                                        |
|--------------|----------------------------------------------------------------------|
| `plain`      | 2–3 features, genre line first, final-token line last, 80–100 words  |
| `structured` | one labelled field per line: Genre, Topic, (Context,) Token, Next    |
| `many-short` | 5–8 features of at most 10 words each: many facts, each said briefly |

The layouts are `nlakit.layouts`; the toy world's oracle writes the same three
(`nlakit.toyworld.oracle.explain_record(..., layout=NAME)`). A prompt's `version` goes
up whenever its text, or the oracle's layout of that name, changes; `nlakit teach`
records `NAME@vVERSION` with the explanations it wrote and `nlakit build` carries it
into the tables' sidecars, so every table says which prompt wrote it. The teacher cache
is keyed by the prompt text itself, so a changed prompt never reads stale answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from nlakit.errors import NLAKitError
from nlakit.layouts import MANY_SHORT_FEATURES, MANY_SHORT_MAX_WORDS


@dataclass
class TeachRequest:
    """One row to explain: `prefix` is the text up to and including the final token,
    `token` that token's text; `key` a unique row id such as "doc_id:position"."""

    key: str
    prefix: str
    token: str


def _task(request: TeachRequest) -> str:
    """What every prompt opens with: the task, the text and its final token."""
    token = json.dumps(request.token, ensure_ascii=False)
    return (
        "A language model has just read the text below, one token at a time. Describe what "
        "its internal state at the FINAL token of the text most likely represents: what it "
        "has worked out about the text so far, and what it is getting ready to predict next.\n"
        "\n"
        f"<text>\n{request.prefix}\n</text>\n"
        "\n"
        f"The final token is {token} (quoted as a JSON string, so leading spaces and "
        "newlines are visible).\n"
        "\n"
    )


_TAGS = "inside <explanation></explanation> tags, and write nothing before or after the tags."


def teacher_prompt(request: TeachRequest) -> str:
    """The `plain` prompt: 2–3 features, genre line first, final-token line last."""
    return _task(request) + (
        "Write 2 or 3 features of that state, the most important first, each on its own line:\n"
        '- The first line says what kind of text this is and what it is about, as "Genre: '
        'description" (for example "Recipe blog: a home cook explains how to proof bread '
        'dough").\n'
        "- The last line is about the final token itself: the role it plays where it stands, "
        "and what must or will most likely come right after it.\n"
        "- A middle line, if you write one, covers anything else the model has to keep track "
        "of here (a speaker, an open bracket or quote, a list in progress, a tense, a number).\n"
        "Use about 80 to 100 words in total. Put the features " + _TAGS
    )


def structured_prompt(request: TeachRequest) -> str:
    """The `structured` prompt: the fields of `nlakit.layouts.STRUCTURED_FIELDS`, one per
    line, in their order, Context optional."""
    return _task(request) + (
        "Describe that state in exactly this layout, one field per line, in this order:\n"
        "Genre: what kind of text this is, and its tone where it has a marked one (for "
        'example "Recipe blog, upbeat in tone")\n'
        "Topic: what the text is about: its subject and the main names in it (for example "
        '"honey bread, for a family dinner")\n'
        "Context: where in the text the final token stands, and anything else the model has "
        "to keep track of here (a speaker, an open bracket or quote, a list in progress, a "
        "tense, a number); leave this line out if there is nothing to add\n"
        "Token: the final token, quoted, and the role it plays where it stands\n"
        "Next: what must or will most likely come right after it\n"
        "Write each label exactly as shown, then a colon and the value (a few words to one "
        "sentence). Use about 50 to 80 words in total. Put the lines " + _TAGS
    )


def many_short_prompt(request: TeachRequest) -> str:
    """The `many-short` prompt: more features, each a short phrase."""
    low, high = MANY_SHORT_FEATURES
    return _task(request) + (
        f"Write {low} to {high} short features of that state, each on its own line: many "
        "facts, each stated briefly, rather than a few described at length. Each feature is "
        f"one phrase of at most {MANY_SHORT_MAX_WORDS} words. Start with what kind of text "
        "this is and its tone, then what it is about (subject, main names), where in the "
        "text the final token stands and what the model has to keep track of (a speaker, an "
        "open bracket or quote, a list in progress, a number), the final token (quoted) and "
        "its role, and end with what must or will most likely come right after it. No "
        "numbers or bullets before the features. Put the features " + _TAGS
    )


@dataclass(frozen=True)
class TeacherPrompt:
    """A named, versioned explanation prompt. `write` turns a request into the prompt."""

    name: str
    version: int
    write: Callable[[TeachRequest], str]
    summary: str

    @property
    def tag(self) -> str:
        """What the explanations record: `structured@v1`."""
        return f"{self.name}@v{self.version}"


PROMPTS: dict[str, TeacherPrompt] = {
    p.name: p
    for p in (
        TeacherPrompt("plain", 1, teacher_prompt, "2-3 features, genre line first"),
        TeacherPrompt("structured", 1, structured_prompt, "Genre/Topic/Context/Token/Next"),
        TeacherPrompt("many-short", 1, many_short_prompt, "5-8 features of a few words"),
    )
}


def get_prompt(name: str) -> TeacherPrompt:
    """The prompt called `name`; an unknown name is an error listing the choices."""
    if name not in PROMPTS:
        raise NLAKitError(
            f"--prompt {name!r}: no such teacher prompt; choose one of "
            f"{', '.join(PROMPTS)} (nlakit.data.teacher_prompts)."
        )
    return PROMPTS[name]
