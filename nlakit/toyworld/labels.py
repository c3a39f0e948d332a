"""The toy world's latent vocabulary: genres, topics, entities, roles, continuations.

One table per latent, each value with the surface forms ("aliases") the oracle
writes and the truth scorer recognises. Aliases are matched case-insensitively
on word boundaries; the tests check that no two values of the same latent share
an alias.
"""

from __future__ import annotations

GENRES = ("chat", "recipe", "sports", "weather", "code", "list", "story", "poem", "news")

# What the first line of an explanation calls the genre.
GENRE_NAMES: dict[str, tuple[str, ...]] = {
    "chat": ("Chat dialogue", "Chat conversation", "Assistant chat"),
    "recipe": ("Recipe", "Cooking recipe", "Recipe instructions"),
    "sports": ("Sports report", "Match report", "Sports recap"),
    "weather": ("Weather report", "Weather forecast", "Forecast"),
    "code": ("Python code", "Code listing", "Python function"),
    "list": ("Shopping list", "To-do list", "Bulleted list"),
    "story": ("Short story", "Narrative", "Fairy tale"),
    "poem": ("Rhyming poem", "Poem", "Verse"),
    "news": ("News article", "News report", "News story"),
}

# Topics per genre: id -> aliases (the id itself first).
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "chat": {
        "travel": ("travel", "trip planning"),
        "cooking": ("cooking", "a dish"),
        "homework": ("homework", "school work"),
        "fitness": ("fitness", "exercise"),
        "gardening": ("gardening", "plants"),
        "music": ("music", "an instrument"),
        "writing": ("writing", "a writing request"),
    },
    "recipe": {t: (t,) for t in ("soup", "bread", "salad", "curry", "cake", "stew")},
    "sports": {
        t: (t,) for t in ("football", "basketball", "hockey", "rugby", "cricket", "baseball")
    },
    "weather": {
        "rain": ("rain", "rainy"),
        "snow": ("snow", "snowy"),
        "sunshine": ("sunshine", "sunny"),
        "storm": ("storm", "stormy"),
        "fog": ("fog", "foggy"),
        "wind": ("wind", "windy"),
    },
    "code": {
        "sorting": ("sorting", "ordering"),
        "counting": ("counting", "tallying"),
        "greeting": ("greeting", "welcome"),
        "arithmetic": ("arithmetic", "math"),
        "parsing": ("parsing", "splitting"),
        "files": ("file handling", "file writing"),
    },
    "list": {
        "groceries": ("groceries", "grocery"),
        "hardware": ("hardware", "tools"),
        "party": ("party", "party supplies"),
        "camping": ("camping", "camping gear"),
        "garden": ("garden", "garden supplies"),
        "chores": ("chores", "housework"),
    },
    "story": {t: (t,) for t in ("forest", "sea", "castle", "village", "desert", "mountain")},
    "poem": {t: (t,) for t in ("moon", "ocean", "autumn", "love", "rain", "night")},
    "news": {
        "politics": ("politics", "political"),
        "science": ("science", "scientific"),
        "business": ("business", "economic"),
        "health": ("health", "medical"),
        "culture": ("culture", "cultural"),
        "transport": ("transport", "transit"),
    },
}

# The chat topic of a request for a piece of writing (worlds built with a writing share);
# every other chat topic is a question.
WRITING_TOPIC = "writing"
QUESTION_TOPICS = tuple(sorted(t for t in TOPICS["chat"] if t != WRITING_TOPIC))

TONES = ("cheerful", "calm", "gloomy", "urgent", "formal")

# Final-token roles: id -> aliases. The role of a token is the role of the span it ends in.
ROLES: dict[str, tuple[str, ...]] = {
    "title": ("a title word", "part of the title"),
    "heading": ("a section heading", "a heading"),
    "quantity": ("a quantity", "an amount"),
    "unit": ("a unit of measure", "a measuring unit"),
    "ingredient": ("an ingredient name", "an ingredient"),
    "bullet": ("a list bullet", "a bullet marker"),
    "step_number": ("a step number", "the number of a step"),
    "instruction": ("part of a cooking instruction", "an instruction word"),
    "team": ("a team name", "part of a team name"),
    "score": ("a score", "a match score"),
    "player": ("a player's name", "a scorer's name"),
    "match_word": ("part of the match summary", "a match-report word"),
    "city": ("a city name", "the name of a city"),
    "temperature": ("a temperature value", "a temperature"),
    "weather_word": ("part of the forecast description", "a forecast word"),
    "day": ("a day of the week", "a weekday"),
    "keyword": ("a Python keyword", "a code keyword"),
    "identifier": ("an identifier", "a variable or function name"),
    "code_string": ("part of a string literal", "text inside a code string"),
    "code_symbol": ("a code symbol", "code punctuation"),
    "comment": ("part of a code comment", "a comment word"),
    "item": ("a list item", "an item on the list"),
    "character": ("a character's name", "the protagonist's name"),
    "narration": ("a narration word", "part of the narration"),
    "dialogue": ("part of quoted speech", "words inside a quotation"),
    "rhyme": ("a rhyme word", "the rhyming word of a line"),
    "verse": ("a word in a verse line", "part of a verse"),
    "author": ("the author's name", "the poet's name"),
    "headline": ("a headline word", "part of the headline"),
    "dateline": ("part of the dateline", "a dateline word"),
    "news_body": ("part of the news lede", "a word of the report"),
    "quote_attribution": ("part of a quote attribution", "the attribution of a quote"),
    "speaker_tag": ("a speaker tag", "a chat role marker"),
    "user_text": ("part of the user's message", "a word from the user"),
    "assistant_text": ("part of the assistant's reply", "a word from the assistant"),
    "punctuation": ("a punctuation mark", "a punctuation sign"),
    "newline": ("a line break", "the end of a line"),
    "end_marker": ("the end-of-turn marker", "an end marker"),
}

# Kinds of token; `next_kind` (what must come next) takes these values.
CONTINUATIONS: dict[str, tuple[str, ...]] = {
    "word": ("another word", "a further word"),
    "name": ("a proper name", "the rest of a name"),
    "number": ("a number", "a digit"),
    "punctuation": ("a punctuation mark", "punctuation"),
    "newline": ("a line break", "a new line"),
    "quote": ("a quotation mark", "a quote mark"),
    "tag": ("a speaker tag", "the next speaker's tag"),
    "end": ("the end-of-turn marker", "the end of the text"),
}
KINDS = tuple(CONTINUATIONS)

# How the context feature describes the section a token sits in.
SECTIONS: dict[str, tuple[str, ...]] = {
    "title": ("the title", "the heading line"),
    "header": ("the recipe header", "the serving details"),
    "ingredients": ("the ingredient list", "the list of ingredients"),
    "steps": ("the numbered steps", "the method"),
    "closing": ("the closing line", "the sign-off"),
    "scoreline": ("the score line", "the final score"),
    "summary": ("the match summary", "the match recap"),
    "scorers": ("the scorers line", "the list of scorers"),
    "forecast": ("a forecast line", "the day-by-day forecast"),
    "advice": ("the advice line", "the closing advice"),
    "signature": ("the function signature", "the def line"),
    "docstring": ("the docstring", "the function's description"),
    "body": ("the function body", "the code block"),
    "call": ("the example call", "the line that calls the function"),
    "items": ("the list of items", "the bulleted items"),
    "narration": ("the narration", "the storytelling"),
    "dialogue": ("a line of dialogue", "a character's speech"),
    "verse": ("a verse line", "the verses"),
    "byline": ("the byline", "the author line"),
    "headline": ("the headline", "the title of the article"),
    "lede": ("the lede", "the opening paragraph"),
    "quote": ("a quotation", "a quoted statement"),
    "user": ("the user's message", "the user's turn"),
    "assistant": ("the assistant's reply", "the assistant's turn"),
}

TONE_WORDS: dict[str, tuple[str, ...]] = {
    "cheerful": ("cheerful", "upbeat"),
    "calm": ("calm", "relaxed"),
    "gloomy": ("gloomy", "sombre"),
    "urgent": ("urgent", "hurried"),
    "formal": ("formal", "plain"),
}
