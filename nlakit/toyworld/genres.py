"""The nine genre generators and their word lists (all written for this project).

Each generator fills a `Writer` for one document given its latents; choices come
from `rng`, so a document is a pure function of (seed, doc_id).
"""

from __future__ import annotations

import random

from nlakit.toyworld.documents import Writer

ENTITIES: dict[str, dict[str, tuple[str, ...]] | tuple[str, ...]] = {
    "chat": {
        "travel": ("Lisbon", "Kyoto", "Oslo", "Cairo", "Lima", "Dublin"),
        "cooking": ("paella", "risotto", "dumplings", "lasagna", "tacos", "ramen"),
        "homework": ("algebra", "geometry", "chemistry", "grammar", "history", "physics"),
        "fitness": ("squats", "pushups", "running", "swimming", "cycling", "yoga"),
        "gardening": ("tomatoes", "roses", "basil", "tulips", "cucumbers", "ferns"),
        "music": ("guitar", "piano", "violin", "drums", "flute", "cello"),
        # What the user asks the assistant to write: a piece of another genre (WRITES).
        "writing": (
            "a recipe",
            "a match report",
            "a weather report",
            "some Python code",
            "a shopping list",
            "a short story",
            "a poem",
            "a news story",
        ),
    },
    "recipe": {
        "soup": ("lentil", "tomato", "pumpkin", "onion", "pea", "mushroom"),
        "bread": ("rye", "oat", "walnut", "olive", "honey", "seeded"),
        "salad": ("bean", "potato", "cabbage", "rice", "beet", "egg"),
        "curry": ("chickpea", "spinach", "cauliflower", "prawn", "lamb", "okra"),
        "cake": ("lemon", "carrot", "almond", "banana", "cherry", "ginger"),
        "stew": ("beef", "barley", "turnip", "sausage", "venison", "parsnip"),
    },
    "sports": (
        "Riverton Rovers",
        "Ashford United",
        "Harbour City",
        "Northgate Lions",
        "Millbrook Falcons",
        "Eastvale Wolves",
        "Stonebridge Rangers",
        "Kingsport Hawks",
    ),
    "weather": ("Brighton", "Glasgow", "Bergen", "Halifax", "Dunedin", "Tromso", "Galway", "Leeds"),
    "code": {
        "sorting": ("sort_names", "order_scores", "rank_items"),
        "counting": ("count_words", "tally_votes", "count_lines"),
        "greeting": ("greet_user", "say_hello", "welcome_guest"),
        "arithmetic": ("add_numbers", "mean_value", "total_price"),
        "parsing": ("parse_date", "read_pairs", "split_fields"),
        "files": ("save_notes", "load_config", "append_log"),
    },
    "list": ("Mia", "Tom", "Grandpa", "the office", "the cabin", "Aunt Rosa", "Leo", "the club"),
    "story": ("Mara", "Tobin", "Elsie", "Ravi", "Nell", "Oskar", "Ines", "Pip"),
    "poem": ("Elsa Grey", "Tom Hale", "June Marsh", "Owen Pike", "Ada Moss", "Ruth Vale"),
    "news": ("Riverton", "Ashford", "Millbrook", "Kingsport", "Northgate", "Eastvale"),
}

# The genre of the piece each writing request asks for (its answer is that piece's
# opening lines: `corpus.make_document`).
WRITES = {
    "a recipe": "recipe",
    "a match report": "sports",
    "a weather report": "weather",
    "some Python code": "code",
    "a shopping list": "list",
    "a short story": "story",
    "a poem": "poem",
    "a news story": "news",
}
assert set(WRITES) == set(ENTITIES["chat"]["writing"])

TONE_ADJECTIVES = {
    "cheerful": ("lovely", "bright", "happy"),
    "calm": ("quiet", "gentle", "easy"),
    "gloomy": ("grey", "dull", "sad"),
    "urgent": ("quick", "sudden", "fast"),
    "formal": ("standard", "regular", "official"),
}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def entities(genre: str, topic: str) -> tuple[str, ...]:
    table = ENTITIES[genre]
    return table[topic] if isinstance(table, dict) else table


def _adj(rng: random.Random, tone: str) -> str:
    return rng.choice(TONE_ADJECTIVES[tone])


# --------------------------------------------------------------------------- recipe

_INGREDIENTS = (
    "onion",
    "garlic",
    "carrot",
    "butter",
    "flour",
    "salt",
    "pepper",
    "milk",
    "rice",
    "stock",
    "sugar",
    "oil",
    "celery",
    "lemon juice",
    "cream",
    "eggs",
    "cumin",
)
_UNITS = ("cups", "grams", "tablespoons", "teaspoons", "cloves", "pinches", "litres")
_STEPS = (
    "Wash the {e} and chop it finely.",
    "Heat the oil in a large pot.",
    "Add the {i} and stir for {n} minutes.",
    "Season with salt and pepper.",
    "Simmer gently for {n} minutes.",
    "Mix the {e} with the {i}.",
    "Bake for {n} minutes until golden.",
    "Serve warm with fresh bread.",
)
_CLOSERS = {
    "cheerful": "Enjoy every bite!",
    "calm": "Take your time and relax.",
    "gloomy": "It will do on a grey day.",
    "urgent": "Serve at once!",
    "formal": "Store leftovers in the fridge.",
}


def recipe(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "title"
    w.words(rng.choice(["", f"{_adj(rng, tone).capitalize()} "]), "title")
    w.words(f"{entity.capitalize()} {topic.capitalize()}", "title")
    w.newline()
    w.section = "header"
    w.words("Serves", "instruction")
    w.put(f" {rng.randint(2, 8)}", "quantity")
    w.words(". Ready in", "instruction")
    w.put(f" {rng.choice([20, 25, 30, 40, 45, 60, 90])}", "quantity")
    w.words(" minutes.", "instruction")
    w.newline()
    w.section = "ingredients"
    w.words("Ingredients:", "heading")
    w.newline()
    others = rng.sample(_INGREDIENTS, rng.randint(2, 4))
    for item in [entity, *others]:
        w.put("-", "bullet")
        w.put(f" {rng.randint(1, 12)}", "quantity")
        w.words(f" {rng.choice(_UNITS)}", "unit")
        w.words(f" {item}", "ingredient")
        w.newline()
    w.section = "steps"
    w.words("Method:", "heading")
    w.newline()
    for n, step in enumerate(rng.sample(_STEPS, rng.randint(2, 4)), start=1):
        w.put(f"{n}", "step_number")
        w.put(".", "punctuation")
        text = " " + step.format(e=entity, i=rng.choice(others), n=rng.randint(2, 30))
        w.words(text, "instruction")
        w.newline()
    w.section = "closing"
    w.words(_CLOSERS[tone], "instruction")


# --------------------------------------------------------------------------- sports

_POINTS = {
    "football": ("goals", 0, 5),
    "basketball": ("points", 70, 120),
    "hockey": ("goals", 0, 6),
    "rugby": ("points", 3, 40),
    "cricket": ("runs", 90, 320),
    "baseball": ("runs", 0, 11),
}
_PLAYERS = (
    "Jonas Reed",
    "Luca Moreno",
    "Sam Okafor",
    "Theo Grant",
    "Nico Varga",
    "Ali Hassan",
    "Ben Carter",
    "Ivan Petrov",
    "Omar Diaz",
    "Kai Jensen",
)
_VENUES = ("Mill Park", "the Dockside Arena", "Castle Ground", "the Old Stadium", "Elm Field")
_VERBS = {
    "cheerful": "celebrated a fine win",
    "calm": "eased to victory",
    "gloomy": "ground out a dull win",
    "urgent": "snatched a late win",
    "formal": "recorded a win",
}


def sports(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    word, low, high = _POINTS[topic]
    away = rng.choice([t for t in ENTITIES["sports"] if t != entity])
    home_score = rng.randint(low + 1, high)
    away_score = rng.randint(low, home_score - 1)
    w.section = "title"
    w.words(rng.choice(["Match report", "Full time", "Final score"]) + f" ({topic})", "title")
    w.newline()
    w.section = "scoreline"
    w.name(entity, "team")
    w.put(f" {home_score}", "score")
    w.put(",", "punctuation")
    w.name(" " + away, "team")
    w.put(f" {away_score}", "score")
    w.newline()
    w.section = "summary"
    w.name(entity, "team")
    w.words(f" {_VERBS[tone]} over", "match_word")
    w.name(" " + away, "team")
    w.words(f" on {rng.choice(DAYS)} at {rng.choice(_VENUES)}, winning by", "match_word")
    w.put(f" {home_score - away_score}", "score")
    w.words(f" {word}.", "match_word")
    w.newline()
    w.section = "scorers"
    w.words("Top scorers:", "heading")
    for i, player in enumerate(rng.sample(_PLAYERS, rng.randint(1, 3))):
        if i:
            w.put(",", "punctuation")
        w.name(" " + player, "player")
        w.put(f" {rng.randint(1, high // 2 + 1)}", "score")
    w.put(".", "punctuation")


# --------------------------------------------------------------------------- weather

_SKIES = {
    "rain": "steady rain and puddles",
    "snow": "heavy snow on the hills",
    "sunshine": "clear skies and warm sun",
    "storm": "thunder and strong gusts",
    "fog": "thick fog until noon",
    "wind": "strong gusts from the sea",
}
_TEMPS = {
    "rain": (6, 15),
    "snow": (-8, 2),
    "sunshine": (18, 30),
    "storm": (8, 16),
    "fog": (3, 11),
    "wind": (5, 14),
}
_ADVICE = {
    "cheerful": "A lovely week to be outside!",
    "calm": "Expect a quiet week.",
    "gloomy": "Another grey week, sadly.",
    "urgent": "Warning: take care on the roads!",
    "formal": "Further updates will follow.",
}


def weather(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "title"
    w.words(rng.choice(["Weather for", "Forecast for", "The week ahead in"]), "title")
    w.name(" " + entity, "city")
    w.newline()
    w.section = "forecast"
    start = rng.randrange(7)
    low, high = _TEMPS[topic]
    for k in range(rng.randint(2, 3)):
        w.put(DAYS[(start + k) % 7], "day")
        w.put(":", "punctuation")
        w.words(f" {_SKIES[topic]}. High", "weather_word")
        t_high = rng.randint(low + 3, high)
        w.put(f" {t_high}", "temperature")
        w.words("C, low", "weather_word")
        w.put(f" {rng.randint(low - 4, t_high - 3)}", "temperature")
        w.words("C.", "weather_word")
        w.newline()
    w.words(f"Wind {rng.choice(['north', 'south', 'east', 'west'])} at", "weather_word")
    w.put(f" {rng.randint(5, 60)}", "quantity")
    w.words(" km/h.", "unit")
    w.newline()
    w.section = "advice"
    w.words(_ADVICE[tone], "weather_word")


# --------------------------------------------------------------------------- code

_CODE = {  # topic: (argument names, body lines using {a} and {r}, docstrings, example arguments)
    "sorting": (
        ("items", "names", "scores"),
        ("{r} = sorted({a})", "{r} = {r}[::-1]"),
        ("Sort the items.", "Return the values in order.", "Order a list."),
        ("[3, 1, 2]", "[9, 4, 7, 1]", '["b", "a"]'),
    ),
    "counting": (
        ("text", "words", "line"),
        ("{r} = 0", "{r} = len({a}.split())"),
        ("Count the words.", "Return how many there are.", "Tally the entries."),
        ('"one two three"', '"a b"', '"to be or not"'),
    ),
    "greeting": (
        ("name", "guest", "user"),
        ('{r} = "Hello, " + {a}', '{r} = {r} + "!"'),
        ("Greet someone.", "Say hello politely.", "Build a welcome message."),
        ('"Ada"', '"Sam"', '"Noor"'),
    ),
    "arithmetic": (
        ("values", "prices", "numbers"),
        ("{r} = sum({a})", "{r} = {r} / len({a})"),
        ("Average the values.", "Add up the numbers.", "Compute a total."),
        ("[4, 8, 15]", "[2, 3]", "[10, 20, 30, 40]"),
    ),
    "parsing": (
        ("line", "row", "record"),
        ('{r} = {a}.split(",")', "{r} = [p.strip() for p in {r}]"),
        ("Split a line into fields.", "Read comma separated parts.", "Parse one record."),
        ('"a, b, c"', '"x,y"', '"1, 2, 3"'),
    ),
    "files": (
        ("path", "filename", "target"),
        ('{r} = open({a}, "a")', '{r}.write("done")'),
        ("Append to a file.", "Write a note to disk.", "Log one line."),
        ('"notes.txt"', '"log.txt"', '"data.csv"'),
    ),
}
_RESULTS = ("result", "total", "output", "value")
_COMMENTS = {
    "cheerful": "# nice and simple",
    "calm": "# no hurry here",
    "gloomy": "# old code, sadly",
    "urgent": "# fix this soon",
    "formal": "# see the docs",
}
_KEYWORDS = {
    "def",
    "return",
    "for",
    "in",
    "if",
    "not",
    "None",
    "print",
    "open",
    "len",
    "sum",
    "sorted",
}


def _code_line(w: Writer, code: str) -> None:
    """Write a code fragment: keywords, identifiers, numbers, symbols and strings."""
    import re

    for piece in re.findall(r'"[^"]*"| ?[A-Za-z_]\w*| ?\d+| ?#[^\n]*| ?[^\w\s"#]+| +', code):
        stripped = piece.strip()
        if stripped.startswith('"'):
            w.quote(stripped[1:-1], "code_string", lead=piece[: len(piece) - len(stripped)])
        elif stripped.startswith("#"):
            w.put(piece[: len(piece) - len(stripped)] + "#", "code_symbol", "punctuation")
            w.words(" " + stripped[1:].strip(), "comment")
        elif stripped[:1].isdigit():
            w.put(piece, "quantity")
        elif stripped in _KEYWORDS:
            w.put(piece, "keyword")
        elif stripped[:1].isalpha() or stripped[:1] == "_":
            w.put(piece, "identifier")
        else:
            w.put(piece, "code_symbol", "punctuation")


def code(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    arg_names, body, docs, examples = _CODE[topic]
    a, r = rng.choice(arg_names), rng.choice(_RESULTS)
    w.section = "signature"
    _code_line(w, f"def {entity}({a}):")
    w.newline()
    w.section = "docstring"
    w.put("    ", "code_symbol", "punctuation")
    w.in_code_string = True
    w.put('"""', "code_symbol", "quote")
    w.words(rng.choice(docs), "code_string")
    w.put('"""', "code_symbol", "quote")
    w.in_code_string = False
    w.newline()
    w.section = "body"
    if rng.random() < 0.5:
        _code_line(w, f"    {_COMMENTS[tone]}")
        w.newline()
    if rng.random() < 0.4:
        _code_line(w, f"    if not {a}:")
        w.newline()
        _code_line(w, "        return None")
        w.newline()
    if rng.random() < 0.5:
        _code_line(
            w, f"    {rng.choice(['limit', 'size', 'step', 'count'])} = {rng.randint(1, 99)}"
        )
        w.newline()
    for line in body[: rng.randint(1, 2)]:
        _code_line(w, "    " + line.format(a=a, r=r))
        w.newline()
    _code_line(w, f"    return {r}")
    w.newline()
    w.newline()
    w.section = "call"
    _code_line(w, f"print({entity}({rng.choice(examples)}))")


# --------------------------------------------------------------------------- list

_ITEMS = {
    "groceries": ("apples", "bread", "milk", "eggs", "cheese", "rice", "tea", "butter", "onions"),
    "hardware": ("nails", "screws", "a hammer", "glue", "sandpaper", "a saw", "hinges", "paint"),
    "party": ("balloons", "candles", "napkins", "lemonade", "cake", "streamers", "cups", "plates"),
    "camping": ("a tent", "matches", "a lantern", "rope", "a stove", "blankets", "a map"),
    "garden": ("seeds", "compost", "a rake", "gloves", "a hose", "pots", "bulbs", "twine"),
    "chores": (
        "wash the car",
        "fix the gate",
        "sweep the floor",
        "water the plants",
        "pay the bills",
        "clean the oven",
        "walk the dog",
    ),
}
_LIST_TITLES = {
    "chores": ("To do for", "Jobs for", "Chores for"),
    "default": ("Shopping list for", "To buy for", "Things to get for"),
}


def shopping_list(w: Writer, rng: random.Random, topic: str, entity: str, tone: str) -> None:
    w.section = "title"
    w.words(rng.choice(_LIST_TITLES.get(topic, _LIST_TITLES["default"])), "title")
    w.name(" " + entity, "character")
    w.put(":", "punctuation")
    w.newline()
    w.section = "items"
    for item in rng.sample(_ITEMS[topic], rng.randint(3, 6)):
        w.put(rng.choice(["-", "*"]), "bullet")
        if topic != "chores" and not item.startswith("a ") and rng.random() < 0.5:
            w.put(f" {rng.randint(2, 12)}", "quantity")
        w.words(f" {item}", "item")
        w.newline()
    w.section = "closing"
    w.words(
        {
            "urgent": "Needed by tonight!",
            "cheerful": "Thanks a lot!",
            "gloomy": "If there is any left.",
            "calm": "No rush.",
            "formal": "Receipts please.",
        }[tone],
        "narration",
    )
