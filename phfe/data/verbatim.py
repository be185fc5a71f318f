"""Family 6: verbatim memory versus an in-context edit of a famous text.

The texts are among the most duplicated on the web: the GPL, Apache and BSD licences that Debian systems ship
in ``/usr/share/common-licenses`` (read at run time where present, never bundled), Python's ``import this``,
and public-domain openings written down here. Each item is a passage of one of them, cut into a prefix and
a continuation of a few words in which one salient word is swapped for a word of the same kind (noun for
noun, number for number...) from :data:`SUBSTITUTES`.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import importlib
import io
import itertools
import random
import re
from pathlib import Path

from phfe.data.family import Family
from phfe.data.probes import Probe
from phfe.tutors.base import Lesson, Tutor, teachings

LICENSE_DIR = Path("/usr/share/common-licenses")
LICENSES = ("Apache-2.0", "BSD", "GPL-2", "GPL-3")

PUBLIC_DOMAIN = {
    "declaration_of_independence": (
        "When in the Course of human events, it becomes necessary for one people to dissolve the political "
        "bands which have connected them with another, and to assume among the powers of the earth, the "
        "separate and equal station to which the Laws of Nature and of Nature's God entitle them, a decent "
        "respect to the opinions of mankind requires that they should declare the causes which impel them to "
        "the separation. We hold these truths to be self-evident, that all men are created equal, that they "
        "are endowed by their Creator with certain unalienable Rights, that among these are Life, Liberty and "
        "the pursuit of Happiness."
    ),
    "gettysburg_address": (
        "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived "
        "in Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a "
        "great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long "
        "endure. We are met on a great battle-field of that war. We have come to dedicate a portion of that "
        "field, as a final resting place for those who here gave their lives that that nation might live. It "
        "is altogether fitting and proper that we should do this."
    ),
    "a_tale_of_two_cities": (
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of "
        "Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we "
        "had everything before us, we had nothing before us, we were all going direct to Heaven, we were all "
        "going direct the other way\u2014in short, the period was so far like the present period, that some "
        "of its noisiest authorities insisted on its being received, for good or for evil, in the superlative "
        "degree of comparison only."
    ),
    "moby_dick": (
        "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or no money in my "
        "purse, and nothing particular to interest me on shore, I thought I would sail about a little and see "
        "the watery part of the world. It is a way I have of driving off the spleen and regulating the "
        "circulation."
    ),
    "genesis": (
        "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
        "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And "
        "God said, Let there be light: and there was light. And God saw the light, that it was good: and God "
        "divided the light from the darkness. And God called the light Day, and the darkness he called Night. "
        "And the evening and the morning were the first day."
    ),
    "hamlet": (
        "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer The slings and "
        "arrows of outrageous fortune, Or to take arms against a sea of troubles And by opposing end them. To "
        "die\u2014to sleep, No more; and by a sleep to say we end The heart-ache and the thousand natural shocks "
        "That flesh is heir to: 'tis a consummation Devoutly to be wish'd."
    ),
    "lords_prayer": (
        "Our Father, who art in heaven, hallowed be thy name; thy kingdom come; thy will be done on earth as "
        "it is in heaven. Give us this day our daily bread; and forgive us our trespasses as we forgive those "
        "who trespass against us; and lead us not into temptation, but deliver us from evil. For thine is the "
        "kingdom, the power and the glory, for ever and ever. Amen."
    ),
    "pride_and_prejudice": (
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
        "want of a wife. However little known the feelings or views of such a man may be on his first "
        "entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that "
        "he is considered the rightful property of some one or other of their daughters."
    ),
    "psalm_23": (
        "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth me "
        "beside the still waters. He restoreth my soul: he leadeth me in the paths of righteousness for his "
        "name's sake. Yea, though I walk through the valley of the shadow of death, I will fear no evil: for "
        "thou art with me; thy rod and thy staff they comfort me."
    ),
    "us_constitution_preamble": (
        "We the People of the United States, in Order to form a more perfect Union, establish Justice, insure "
        "domestic Tranquility, provide for the common defence, promote the general Welfare, and secure the "
        "Blessings of Liberty to ourselves and our Posterity, do ordain and establish this Constitution for the "
        "United States of America."
    ),
}


# Salient words and a substitute of the same kind and form (noun for noun, plural for plural, verb for verb
# in the same tense, adjective for adjective, number for number); digits are edited to the next number.
SUBSTITUTES = {
    # nouns
    "age": "era", "arms": "weapons", "arrows": "spears", "author": "creator", "authorities": "critics",
    "authors": "creators", "bands": "ties", "beginning": "morning", "belief": "faith", "blessings": "benefits",
    "bread": "food", "cases": "examples", "causes": "reasons", "circulation": "digestion", "code": "text",
    "component": "module", "computer": "machine", "conditions": "requirements", "constitution": "charter",
    "continent": "island", "contribution": "donation", "contributor": "partner", "contributors": "partners",
    "copies": "versions", "copyright": "trademark", "creator": "maker", "danger": "risk", "darkness": "shadow",
    "daughters": "sons", "day": "night", "death": "doom", "deep": "sea", "defence": "safety",
    "despair": "sorrow", "developers": "engineers", "distribution": "publication", "document": "manual",
    "entities": "companies", "entity": "company", "epoch": "era", "errors": "mistakes", "evening": "twilight",
    "events": "affairs", "evil": "harm", "example": "instance", "face": "surface", "families": "households",
    "father": "master", "fathers": "ancestors", "feelings": "thoughts", "fee": "price", "field": "ground",
    "file": "document", "files": "documents", "flesh": "blood", "foolishness": "stupidity", "form": "shape",
    "fortune": "fate", "foundation": "society", "freedom": "liberty", "freedoms": "liberties",
    "glory": "honor", "happiness": "comfort", "heaven": "paradise", "hope": "joy", "idea": "plan",
    "implementation": "design", "incredulity": "scepticism", "individuals": "persons", "interface": "protocol",
    "justice": "order", "kingdom": "empire", "language": "dialect", "laws": "rules", "liberty": "freedom",
    "license": "contract", "licenses": "contracts", "life": "health", "light": "fire", "lives": "souls",
    "mankind": "humanity", "mind": "heart", "minds": "hearts", "modifications": "changes", "money": "gold",
    "name": "title", "namespaces": "modules", "nation": "country", "nature": "reason",
    "neighbourhood": "village", "notice": "statement", "notices": "statements", "opinions": "views",
    "owner": "author", "pastures": "meadows", "patent": "trademark", "patents": "trademarks", "paths": "roads",
    "people": "nation", "period": "era", "permission": "consent", "place": "spot", "posterity": "children",
    "power": "might", "powers": "forces", "practicality": "usefulness", "price": "cost",
    "problems": "errors", "program": "library", "programs": "libraries", "proposition": "principle",
    "purity": "elegance", "purpose": "goal", "purposes": "goals", "purse": "pocket", "question": "problem",
    "readability": "clarity", "recipients": "customers", "respect": "regard", "restrictions": "limits",
    "rights": "duties", "rod": "sword", "rules": "laws", "sea": "flood", "season": "month",
    "section": "chapter", "sections": "chapters", "separation": "division", "shepherd": "keeper",
    "shocks": "blows", "shore": "land", "sleep": "rest", "slings": "stones", "software": "hardware",
    "soul": "heart", "source": "object", "spirit": "breath", "spleen": "sorrow", "spring": "summer",
    "staff": "shield", "station": "place", "system": "platform", "systems": "platforms",
    "temptation": "desire", "terms": "rules", "things": "items", "times": "days", "tranquility": "harmony",
    "trespasses": "sins", "troubles": "problems", "truth": "fact", "truths": "facts", "union": "republic",
    "users": "readers", "valley": "desert", "version": "edition", "versions": "editions", "views": "opinions",
    "war": "conflict", "warranties": "guarantees", "warranty": "guarantee", "waters": "rivers",
    "welfare": "health", "wife": "bride", "winter": "autumn", "wisdom": "knowledge", "work": "product",
    "works": "products", "world": "globe",
    # verbs
    "brought": "carried", "comfort": "guide", "conceived": "founded", "copy": "print", "counts": "matters",
    "created": "made", "dedicated": "devoted", "distribute": "publish", "distributed": "published",
    "engaged": "involved", "give": "grant", "granted": "given", "guess": "wait", "includes": "contains",
    "know": "learn", "mean": "denote", "means": "denotes", "modified": "altered", "modify": "alter",
    "permitted": "allowed", "protect": "defend", "receive": "obtain", "received": "obtained",
    "reproduce": "replicate", "share": "sell", "written": "printed",
    # adjectives and adverbs
    "appropriate": "suitable", "bad": "poor", "beautiful": "pretty", "best": "finest", "better": "worse",
    "complex": "difficult", "complicated": "confusing", "daily": "weekly", "decent": "proper",
    "dense": "heavy", "domestic": "national", "dutch": "swiss", "easy": "hard", "electronic": "digital",
    "equal": "similar", "explicit": "clear", "final": "last", "flat": "wide", "free": "open",
    "general": "universal", "good": "bad", "great": "small", "green": "golden", "hard": "easy",
    "human": "mortal", "implicit": "hidden", "legal": "formal", "natural": "mortal", "nested": "layered",
    "never": "rarely", "new": "fresh", "nobler": "braver", "obvious": "plain", "original": "initial",
    "outrageous": "bitter", "particular": "specific", "perfect": "stable", "political": "social",
    "prominent": "visible", "proprietary": "commercial", "public": "common", "separate": "distinct",
    "silently": "quietly", "simple": "plain", "single": "young", "sparse": "thin", "specific": "particular",
    "ugly": "messy", "universally": "widely", "watery": "frozen", "whole": "entire", "worst": "darkest",
    # number words
    "fifty": "forty", "first": "second", "four": "five", "seven": "eight", "thousand": "hundred",
    "three": "four", "two": "three",
}  # fmt: skip

# Demonstrations for the tutor: copying a well-known line that was edited (public-domain nursery rhymes).
DEMONSTRATIONS = (
    "Twinkle, twinkle, little lamp, How I wonder what you are.",
    "Mary had a little goat, Its fleece was white as snow.",
    "Jack and Jill went up the hill To fetch a pail of milk.",
    "Humpty Dumpty sat on a fence, Humpty Dumpty had a great fall.",
    "Row, row, row your boat, Gently down the river.",
    "Hickory, dickory, dock, The cat ran up the clock.",
    "Baa, baa, white sheep, Have you any wool?",
    "Old King Cole was a jolly old soul, And a merry old soul was he.",
)
RULE = "Repeat the text exactly as it is written, even where it differs from the version you know."
FRAME = "Here is a text:\n{passage}\n\nRepeat the text.\n"

TARGET_WORDS, MAX_WORDS, MIN_WORDS = 80, 120, 30  # passage lengths in words
WORD = re.compile(r"\S+")
SENTENCE_END = re.compile(r"[.!?;:]['\")]*$")
CORE = re.compile(r"^(\W*)([A-Za-z]+|\d+)((?:'s)?\W*)$")  # punctuation, the word or number, punctuation


def zen_of_python() -> str:
    """The text ``import this`` prints, decoded from the ``this`` module without printing it."""
    with contextlib.redirect_stdout(io.StringIO()):
        this = importlib.import_module("this")
    return codecs.decode(this.s, "rot13")


def license_texts(directory: str | Path = LICENSE_DIR) -> dict[str, str]:
    """The licences of :data:`LICENSES` present in ``directory`` by name ("license:GPL-3"); absent ones are
    left out, so a system without them yields fewer texts."""
    paths = {name: Path(directory) / name for name in LICENSES}
    return {f"license:{n}": p.read_text(encoding="utf-8", errors="replace") for n, p in paths.items() if p.is_file()}


def famous_texts(license_dir: str | Path = LICENSE_DIR) -> dict[str, str]:
    """Every text of the family by name, sorted: the public-domain openings, the Zen of Python and the
    licences present (line breaks kept as written: the licence files are copied verbatim across the web)."""
    texts = {**PUBLIC_DOMAIN, "zen_of_python": zen_of_python(), **license_texts(license_dir)}
    return {name: "\n".join(line.rstrip() for line in texts[name].strip().splitlines()) for name in sorted(texts)}


def passages(text: str) -> list[str]:
    """``text`` cut at sentence ends into passages of about :data:`TARGET_WORDS` words (at most
    :data:`MAX_WORDS`, cut mid-sentence only when one sentence is longer; a passage under :data:`MIN_WORDS`
    words is dropped)."""
    words = list(WORD.finditer(text))
    ends = [i for i, w in enumerate(words) if SENTENCE_END.search(w.group()) or "\n\n" in text[w.end() : w.end() + 3]]
    ends.append(len(words) - 1)
    out, start = [], 0
    for index, end in enumerate(ends):
        following = ends[index + 1] if index + 1 < len(ends) else len(words)
        while end + 1 - start > MAX_WORDS:  # one sentence longer than a passage
            out.append((start, start + MAX_WORDS - 1))
            start += MAX_WORDS
        if end >= start and (end + 1 - start >= TARGET_WORDS or following + 1 - start > MAX_WORDS):
            out.append((start, end))
            start = end + 1
    if start < len(words):  # the tail: joins the last passage when short and that fits
        short = len(words) - start < MIN_WORDS and out and len(words) - out[-1][0] <= MAX_WORDS
        out[-1:] = [(out[-1][0], len(words) - 1)] if short else [*out[-1:], (start, len(words) - 1)]
    return [text[words[a].start() : words[b].end()] for a, b in out if b + 1 - a >= MIN_WORDS]


def substitute(word: str, previous: str = "") -> str | None:
    """``word`` with its core swapped for one of the same kind (case and punctuation kept), or None when it
    has no substitute or the swap would break "a"/"an" agreement with ``previous``."""
    match = CORE.match(word)
    if not match:
        return None
    before, core, after = match.groups()
    if core.isdigit():
        return f"{before}{int(core) + 1}{after}"
    new = SUBSTITUTES.get(core.lower())
    if new is None:
        return None
    if previous.lower() in ("a", "an") and (core[0].lower() in "aeiou") != (new[0] in "aeiou"):
        return None
    if core.isupper() and len(core) > 1:
        new = new.upper()
    elif core[0].isupper():
        new = new[0].upper() + new[1:]
    return f"{before}{new}{after}"


@dataclasses.dataclass(frozen=True)
class Edit:
    """A passage cut into prefix, continuation and rest, with one word of the continuation swapped."""

    prefix: str
    original: str  # the continuation as written, with its leading space
    edited: str  # the same with ``word`` replaced by ``substitute``
    rest: str
    word: str
    substitute: str

    def passage(self, edited: bool) -> str:
        return self.prefix + (self.edited if edited else self.original) + self.rest


def make_edit(
    passage: str, rng: random.Random, min_prefix_words: int = 12, continuation_words: tuple[int, int] = (5, 12)
) -> Edit | None:
    """A random edit of ``passage``: a word with a substitute (one not already in the passage), at most three
    words into a continuation of ``continuation_words`` words within one paragraph, which follows at least
    ``min_prefix_words`` words on the same line (None when no word qualifies)."""
    words = list(WORD.finditer(passage))
    gaps = [passage[a.end() : b.start()] for a, b in itertools.pairwise(words)] + ["\n\n"]  # gaps[i]: after word i
    present = {match[2].lower() for match in map(CORE.match, passage.split()) if match}
    shortest, longest = continuation_words
    splits = []
    for j in range(min_prefix_words, len(words)):
        new = substitute(words[j].group(), words[j - 1].group())
        if new is None or CORE.match(new)[2].lower() in present:
            continue
        for i in range(max(min_prefix_words, j - 3), j + 1):
            room = next(e for e in range(i, len(words)) if "\n\n" in gaps[e]) + 1 - i  # words before a break
            if gaps[i - 1] == " " and room >= shortest:
                splits.append((j, i, room))
    if not splits:
        return None
    j, i, room = rng.choice(splits)
    end = i + rng.randint(shortest, min(longest, room))
    start, stop = words[i - 1].end(), words[end - 1].end()
    word = words[j].group()
    new = substitute(word, words[j - 1].group())
    a, b = words[j].start() - start, words[j].end() - start
    continuation = passage[start:stop]
    edited = continuation[:a] + new + continuation[b:]
    return Edit(passage[:start], continuation, edited, passage[stop:], CORE.match(word)[2], CORE.match(new)[2])


@dataclasses.dataclass
class VerbatimMemory(Family):
    """Famous passages continued from memory, against a copy of the passage with one word edited.

    Conditions (candidates: the continuation as written, index 0, and as edited, index 1; both start with a
    space and differ in exactly one word):

    - ``closed_book``: the prompt is the passage's prefix; memorized 0, in-context None.
    - ``edited_in_context``: the edited passage is shown, then "Repeat the text." and the prefix; memorized
      0, in-context 1.
    - ``original_in_context``: the control, the passage as written is shown; memorized and in-context are
      both 0 (the only condition where they agree).

    Candidates share every word but one and are not token-count matched: a rare word split into more tokens
    than its substitute loses summed log-likelihood even closed book (substitutes were picked to match token
    counts in SmolLM2's and Gemma 3's tokenizers where a common word allowed). Read summed and per-token
    accuracy side by side, and prefer within-item contrasts (persuasion: the shift from the closed-book
    probe), which cancel the difference. The tutor's teaching (the rule "repeat the text
    exactly", or demonstrations of edited nursery rhymes copied faithfully) goes before every condition.
    Items take passages from the texts in turn (the first of each text, then the second...); the licences
    take part only where ``license_dir`` holds them, so the item count depends on the system.
    """

    name = "verbatim_memory"
    version = 2

    passages_per_text: int = 10  # the first passages of each text (a licence's opening is its most quoted part)
    min_prefix_words: int = 12
    continuation_words: tuple[int, int] = (5, 12)
    ks: tuple[int, ...] = (0,)  # demonstrations, with a DemonstrationTutor (other tutors teach the same at any k)
    license_dir: str = str(LICENSE_DIR)

    def __post_init__(self) -> None:
        if not all(0 <= k <= len(DEMONSTRATIONS) for k in self.ks):
            raise ValueError(f"ks must lie in 0..{len(DEMONSTRATIONS)}: {self.ks}")
        shortest, longest = self.continuation_words
        if not 1 <= shortest <= longest or self.min_prefix_words < 1:
            raise ValueError(f"bad continuation_words {self.continuation_words} or min_prefix_words")

    def pool(self) -> list[tuple[str, int, str]]:
        """(text name, passage index, passage) in turn across texts, up to ``passages_per_text`` of each."""
        texts = famous_texts(self.license_dir)
        by_text = {name: passages(text)[: self.passages_per_text] for name, text in texts.items()}
        rounds = range(max(map(len, by_text.values()), default=0))
        return [(name, i, found[i]) for i in rounds for name, found in by_text.items() if i < len(found)]

    def build(self, seed: int, tutor: Tutor) -> list[Probe]:
        lesson = Lesson(RULE, tuple(FRAME.format(passage=line) + line + "\n\n" for line in DEMONSTRATIONS))
        edits: dict[str, Edit] = {}
        for name, index, passage in self.pool():
            if len(edits) == self.n_items:
                break
            rng = random.Random(f"{seed}:{name}:{index}")
            edit = make_edit(passage, rng, self.min_prefix_words, self.continuation_words)
            if edit is not None:
                edits[f"{name}/{index}"] = edit
        taught = teachings(tutor, lesson, self.ks)  # the same for every item
        return [
            probe
            for item_id, edit in edits.items()
            for k, teaching in taught.items()
            for probe in self.item_probes(edit, item_id, seed, k, teaching)
        ]

    def item_probes(self, edit: Edit, item_id: str, seed: int, k: int, teaching: str) -> list[Probe]:
        """The three conditions of one edited passage."""
        text = item_id.rsplit("/", 1)[0]
        shown = {
            "closed_book": ("", None),
            "edited_in_context": (FRAME.format(passage=edit.passage(edited=True)), 1),
            "original_in_context": (FRAME.format(passage=edit.passage(edited=False)), 0),
        }
        return [
            Probe(
                family=self.name,
                item_id=item_id,
                condition=condition,
                prompt=teaching + context + edit.prefix,
                candidates=(edit.original, edit.edited),
                memorized=0,
                in_context=in_context,
                template_id=text,
                entity=item_id,
                seed=seed,
                k=k,
                meta={"text": text, "edit": [edit.word, edit.substitute]},
            )
            for condition, (context, in_context) in shown.items()
        ]
