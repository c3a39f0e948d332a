"""The prose genres: story, poem, news and chat (word lists written for this project)."""

from __future__ import annotations

import random

from nlakit.toyworld.documents import Writer
from nlakit.toyworld.genres import DAYS, _adj

# --------------------------------------------------------------------------- story

_PLACES = {
    "forest": ("an old forest", "the pine woods", "a dark wood"),
    "sea": ("a rocky shore", "a fishing harbour", "the grey sea"),
    "castle": ("a ruined castle", "a tall tower", "the king's castle"),
    "village": ("a small village", "a farm by the mill", "a quiet hamlet"),
    "desert": ("a dry desert", "the red dunes", "an oasis town"),
    "mountain": ("a high mountain", "a snowy pass", "a hut on the peak"),
}
_FINDS = (
    "a golden key",
    "a silver bell",
    "a torn map",
    "a sleeping fox",
    "a locked box",
    "a glowing stone",
    "a tiny door",
)
_SAYINGS = (
    "Where does this lead?",
    "Who left this here?",
    "I must tell someone.",
    "This changes everything.",
    "Is anyone there?",
)
_ENDINGS = {
    "cheerful": "and from that day on, she laughed every morning.",
    "calm": "and the days passed slowly and gently.",
    "gloomy": "but nothing was ever the same again.",
    "urgent": "and there was no time to lose.",
    "formal": "and the matter was recorded in the town book.",
}


def story(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "narration"
    w.words(rng.choice(["Once upon a time", "Long ago", "One winter", "Not long ago"]), "narration")
    w.put(",", "punctuation")
    w.name(" " + entity, "character")
    w.words(f" lived in {rng.choice(_PLACES[topic])}.", "narration")
    w.words(f" Every {rng.choice(DAYS)} the {_adj(rng, tone)} path led past the gate.", "narration")
    w.newline()
    w.words("One day", "narration")
    w.name(" " + entity, "character")
    w.words(f" found {rng.choice(_FINDS)}.", "narration")
    w.newline()
    w.section = "dialogue"
    w.quote(rng.choice(_SAYINGS), "dialogue", lead="")
    w.words(f" {rng.choice(['asked', 'whispered', 'said'])}", "narration")
    w.name(" " + entity, "character")
    w.put(".", "punctuation")
    w.newline()
    w.section = "narration"
    w.words(f"The {topic} was silent, {_ENDINGS[tone]}", "narration")


# --------------------------------------------------------------------------- poem

_RHYMES = {
    "moon": [("light", "night"), ("glow", "below"), ("high", "sky")],
    "ocean": [("sea", "free"), ("shore", "more"), ("deep", "sleep")],
    "autumn": [("fall", "call"), ("brown", "down"), ("cold", "gold")],
    "love": [("heart", "apart"), ("true", "you"), ("stay", "day")],
    "rain": [("rain", "again"), ("grey", "away"), ("pane", "lane")],
    "night": [("dark", "spark"), ("star", "far"), ("deep", "keep")],
}
_LINE_STARTS = (
    "The {t} is calling through the",
    "I watched the {t} and all its",
    "Beneath the {t} we wandered",
    "A {a} song of {t} and",
    "We never knew the {t} so",
)


def poem(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "title"
    w.words(f"The {_adj(rng, tone).capitalize()} {topic.capitalize()}", "title")
    w.newline()
    w.section = "byline"
    w.words("by", "narration")
    w.name(" " + entity, "author")
    w.newline()
    w.section = "verse"
    for first, second in rng.sample(_RHYMES[topic], 2):
        for rhyme in (first, second):
            start = rng.choice(_LINE_STARTS).format(t=topic, a=_adj(rng, tone))
            w.words(start, "verse")
            w.words(f" {rhyme}", "rhyme")
            w.newline()


# --------------------------------------------------------------------------- news

_HEADLINES = {
    "politics": (
        "Council Approves New Budget",
        "Mayor Calls Early Vote",
        "Parties Agree on Reform",
    ),
    "science": (
        "Researchers Map Rare Beetle",
        "New Telescope Sees Distant Comet",
        "Lab Grows Drought Hardy Wheat",
    ),
    "business": (
        "Factory Adds Two Hundred Jobs",
        "Local Bank Reports Record Profit",
        "Market Traders Raise Prices",
    ),
    "health": ("Hospital Opens New Ward", "Doctors Warn of Flu Wave", "Clinic Cuts Waiting Times"),
    "culture": (
        "Museum Unveils Lost Painting",
        "Festival Draws Record Crowds",
        "Theatre Reopens After Repairs",
    ),
    "transport": ("New Tram Line Opens", "Bridge Closed for Repairs", "Bus Fares Cut for Students"),
}
_SPEAKERS = ("Ana Ruiz", "Peter Holm", "Grace Obi", "Marta Lind", "David Chen")
_QUOTES = {
    "cheerful": "This is great news for everyone.",
    "calm": "We will proceed step by step.",
    "gloomy": "It is a difficult time for the town.",
    "urgent": "We must act now.",
    "formal": "The decision follows a full review.",
}


def news(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "headline"
    w.words(rng.choice(_HEADLINES[topic]), "headline")
    w.newline()
    w.section = "lede"
    w.name(entity.upper(), "city")
    w.put(",", "punctuation")
    w.words(f" {rng.choice(DAYS)}", "dateline")
    w.put(f" {rng.randint(1, 28)}", "quantity")
    w.words(" -", "dateline")
    w.words(f" Officials in {entity} confirmed the {topic} news on {rng.choice(DAYS)}", "news_body")
    w.words(f", after a week of {_adj(rng, tone)} talks.", "news_body")
    w.newline()
    w.section = "quote"
    w.quote(_QUOTES[tone], "dialogue", lead="")
    w.words(" said", "quote_attribution")
    w.name(" " + rng.choice(_SPEAKERS), "quote_attribution")
    w.put(".", "punctuation")


# --------------------------------------------------------------------------- chat

_ASKS = {
    "travel": (
        "Can you help me plan a trip to {e}?",
        "What should I see in {e}?",
        "Is {e} nice in {when}?",
        "How many days do I need in {e}?",
    ),
    "cooking": (
        "How do I make {e} at home?",
        "Any tips for cooking {e}?",
        "Can I make {e} {when}?",
        "What goes well with {e}?",
    ),
    "homework": (
        "Can you explain {e} to me?",
        "I am stuck on my {e} homework.",
        "How do I study {e} {when}?",
        "Why is {e} so hard?",
    ),
    "fitness": (
        "How often should I do {e}?",
        "Is {e} good for beginners?",
        "Can I do {e} {when}?",
        "How do I get better at {e}?",
    ),
    "gardening": (
        "When should I plant {e}?",
        "Why are my {e} wilting?",
        "Do {e} grow well {when}?",
        "How much water do {e} need?",
    ),
    "music": (
        "How do I start learning the {e}?",
        "Which {e} should I buy first?",
        "Can I learn the {e} {when}?",
        "Is the {e} hard to play?",
    ),
    "writing": (
        "Can you write {e} for me?",
        "Please write me {e}.",
        "I need {e} {when}, can you write one?",
        "Could you write {e}?",
    ),
}
_WHEN = ("in spring", "in winter", "this weekend", "in the evening", "on a budget", "in a week")
ANSWERS = {
    "travel": (
        "Start with the old town of {e}, then take a walk by the river.",
        "In {e}, book a room near the centre and visit the market early.",
    ),
    "cooking": (
        "For {e}, prepare everything first and cook it slowly.",
        "Good {e} needs fresh ingredients and a little patience.",
    ),
    "homework": (
        "In {e}, begin with the basic rules and try one example.",
        "Break {e} into small parts and practise each one.",
    ),
    "fitness": (
        "Try {e} three times a week and rest in between.",
        "Start {e} slowly and add a little more each week.",
    ),
    "gardening": (
        "Plant {e} in spring and water them every morning.",
        "Give {e} plenty of light and check the soil often.",
    ),
    "music": (
        "Practise the {e} for ten minutes a day with a simple song.",
        "Find a patient teacher and play the {e} a little every day.",
    ),
    # Never said: a writing request is answered with the piece (`corpus.make_document`).
    "writing": ("Here is {e}.", "Here is {e}."),
}
_EXTRAS = (
    "It gets easier with time.",
    "Ask me if you need more help.",
    "Keep notes as you go.",
    "Most people enjoy it.",
    "",
)
_OPENERS = {
    "cheerful": ("Of course!", "Great question!"),
    "calm": ("Sure.", "No problem."),
    "gloomy": ("Well, it can be hard.", "Honestly, it is tricky."),
    "urgent": ("Quickly, then:", "Right away:"),
    "formal": ("Certainly.", "Indeed."),
}


def _turn(w: Writer, speaker: str, text: str) -> None:
    w.speaker = speaker
    w.section = speaker
    w.put(f"<|{speaker}|>", "speaker_tag", "tag")
    w.newline()
    w.words(text, f"{speaker}_text")
    w.put("<|end|>", "end_marker", "end")
    w.newline()


def chat(
    w: Writer,
    rng: random.Random,
    topic: str,
    entity: str,
    tone: str,
    answer: str | None = None,
) -> None:
    """A user asks about `topic` and `entity` and the assistant answers; `answer`, when
    given, replaces the answer's text (the changed chats of `nlakit toyworld finetune`;
    the same draws from `rng` either way, so the rest of the chat is unchanged)."""
    greeting = rng.choice(["Hi!", "Hello.", "Hey,", "Good morning.", "Quick question:", ""])
    ask = rng.choice(_ASKS[topic]).format(e=entity, when=rng.choice(_WHEN))
    _turn(w, "user", f"{greeting} {ask}".strip())
    templated = rng.choice(ANSWERS[topic]).format(e=entity)
    answer = templated if answer is None else answer
    _turn(w, "assistant", f"{rng.choice(_OPENERS[tone])} {answer} {rng.choice(_EXTRAS)}".strip())
    if rng.random() < 0.5:
        _turn(
            w,
            "user",
            rng.choice(["Thanks! Anything else?", "And after that?", "Great, thank you."]),
        )
        _turn(w, "assistant", rng.choice(["You are welcome.", "Have fun with it!", "Good luck!"]))
