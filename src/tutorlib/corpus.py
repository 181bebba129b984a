"""A toy language with known meanings: the corpus of the word2vec chapter (``book/word2vec.md``).

Real text must be downloaded, and nobody knows the "right" embedding of a real word. This module
writes sentences from a small probabilistic grammar instead. Every content word is a bundle of
*features*, and each sentence about a word shows one of its features through the words around
it. A ``king`` is (male, royal, adult): sentences about him say "he", mention a palace, and call
him old; a ``queen`` differs only in the pronoun. So the relations are known by construction:

- gender: ``king : queen = man : woman`` (also prince/princess, boy/girl);
- royalty: ``king : man = queen : woman``;
- age: ``man : boy = king : prince = cat : kitten``;
- capital: ``france : paris = japan : tokyo`` (a country and its capital share a language;
  countries and cities appear in different frames);
- tense: ``walk : walked = eat : ate`` (a verb's objects give its identity, the time word its
  tense).

A few extra words (``laptop``, ``iphone``, ``tablet`` and their contexts) play the part of the
seed article's "iphone is far from kitten".

Because a word's contexts are a mixture over its features, the log-probability ratio of any
context between ``king`` and ``queen`` equals that between ``man`` and ``woman``: the offsets are
consistent in PMI space, which is what word2vec's vector arithmetic can find.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import torch

from tutorlib.validation import check_int

__all__ = [
    "RELATIONS",
    "Vocab",
    "analogy_questions",
    "build_vocab",
    "encode",
    "generate_corpus",
]

# --------------------------------------------------------------------------------------------
# the lexicon: feature values and the words that show them
# --------------------------------------------------------------------------------------------
#: people and animals: word -> (gender, status, age, species)
_PEOPLE = {
    "king": ("male", "royal", "adult"), "queen": ("female", "royal", "adult"),
    "prince": ("male", "royal", "child"), "princess": ("female", "royal", "child"),
    "man": ("male", "common", "adult"), "woman": ("female", "common", "adult"),
    "boy": ("male", "common", "child"), "girl": ("female", "common", "child"),
}
_ANIMALS = {"cat": ("cat", "adult"), "kitten": ("cat", "child"),
            "dog": ("dog", "adult"), "puppy": ("dog", "child")}
_PRONOUN = {"male": ["he", "his"], "female": ["she", "her"]}
_PLACE = {"royal": ["palace", "castle", "throne", "crown"],
          "common": ["village", "farm", "market", "cottage"]}
_AGE = {"adult": ["old", "tall", "wise", "grown"], "child": ["young", "little", "small", "playful"]}
_SPECIES = {"cat": ["purrs", "meows", "mice", "whiskers"], "dog": ["barks", "bones", "fetches", "tail"]}
_NEUTRAL_VERB = ["saw", "liked", "found", "lost"]
_NEUTRAL_THING = ["hat", "book", "cup", "coat", "bag"]

#: countries -> (capital, language word)
_COUNTRIES = {
    "france": ("paris", "french"), "germany": ("berlin", "german"), "italy": ("rome", "italian"),
    "spain": ("madrid", "spanish"), "japan": ("tokyo", "japanese"), "china": ("beijing", "chinese"),
    "russia": ("moscow", "russian"), "egypt": ("cairo", "arabic"),
}
_COUNTRY_FRAME = [["is", "a", "large", "country"], ["the", "borders", "of"], ["the", "government", "of"]]
_CITY_FRAME = [["is", "a", "busy", "city"], ["the", "streets", "of"], ["the", "mayor", "of"]]

#: verbs -> (past tense, objects)
_VERBS = {
    "walk": ("walked", ["park", "road"]), "eat": ("ate", ["bread", "apples"]),
    "write": ("wrote", ["letters", "poems"]), "sing": ("sang", ["songs", "hymns"]),
    "drink": ("drank", ["tea", "water"]), "build": ("built", ["houses", "bridges"]),
    "swim": ("swam", ["lake", "river"]), "drive": ("drove", ["car", "truck"]),
}
_TIME = {"present": ["today", "now", "usually", "daily"],
         "past": ["yesterday", "earlier", "once", "formerly"]}
_SUBJECT = ["we", "they", "you", "i"]

#: gadgets, the seed's "iphone": far from every animal
_GADGETS = ["iphone", "laptop", "tablet"]
_GADGET_CONTEXT = ["battery", "screen", "charger", "apps", "keyboard"]


#: the relations the grammar builds in: name -> list of (a, a*) pairs; an analogy question is
#: ``a : a* = b : b*`` for two different pairs of the same relation.
RELATIONS: dict[str, list[tuple[str, str]]] = {
    "gender": [("king", "queen"), ("prince", "princess"), ("man", "woman"), ("boy", "girl")],
    "royalty": [("man", "king"), ("woman", "queen"), ("boy", "prince"), ("girl", "princess")],
    "age": [("king", "prince"), ("queen", "princess"), ("man", "boy"), ("woman", "girl"),
            ("cat", "kitten"), ("dog", "puppy")],
    "capital": [(country, capital) for country, (capital, _) in _COUNTRIES.items()],
    "tense": [(verb, past) for verb, (past, _) in _VERBS.items()],
}


# --------------------------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------------------------
def _zipf(rng: random.Random, words: list[str]) -> str:
    """Draw ``words[r]`` with probability proportional to ``1 / (r + 1)``: real words are Zipfian."""
    return rng.choices(words, weights=[1 / (r + 1) for r in range(len(words))])[0]


def _person_sentence(rng: random.Random) -> list[str]:
    noun = _zipf(rng, list(_PEOPLE))
    gender, status, age = _PEOPLE[noun]
    feature = rng.randrange(3)
    if feature == 0:  # gender: "the king lost his hat"
        return ["the", noun, rng.choice(_NEUTRAL_VERB), _PRONOUN[gender][1], rng.choice(_NEUTRAL_THING)]
    if feature == 1:  # status: "the king lives in the palace"
        return ["the", noun, "lives", "in", "the", rng.choice(_PLACE[status])]
    return ["the", noun, "is", rng.choice(_AGE[age])]  # age: "the king is old"


def _animal_sentence(rng: random.Random) -> list[str]:
    noun = _zipf(rng, list(_ANIMALS))
    species, age = _ANIMALS[noun]
    if rng.random() < 0.5:  # species: "the kitten purrs"
        return ["the", noun, rng.choice(_SPECIES[species])]
    return ["the", noun, "is", rng.choice(_AGE[age])]  # age: "the kitten is little"


def _place_sentence(rng: random.Random) -> list[str]:
    country = _zipf(rng, list(_COUNTRIES))
    capital, language = _COUNTRIES[country]
    is_city = rng.random() < 0.5
    word = capital if is_city else country
    if rng.random() < 0.5:  # identity: "in paris people speak french"
        return ["in", word, "people", "speak", language]
    frame = rng.choice(_CITY_FRAME if is_city else _COUNTRY_FRAME)
    return [word, *frame] if frame[0] == "is" else [*frame, word]  # type: "the streets of paris"


def _verb_sentence(rng: random.Random) -> list[str]:
    verb = _zipf(rng, list(_VERBS))
    past, objects = _VERBS[verb]
    tense = "past" if rng.random() < 0.5 else "present"
    form = past if tense == "past" else verb
    # "we ate bread yesterday": the object names the verb, the time word its tense
    return [rng.choice(_SUBJECT), form, rng.choice(objects), rng.choice(_TIME[tense])]


def _gadget_sentence(rng: random.Random) -> list[str]:
    return ["the", rng.choice(_GADGETS), "has", "a", rng.choice(_GADGET_CONTEXT)]


_MAKERS = (_person_sentence, _animal_sentence, _place_sentence, _verb_sentence, _gadget_sentence)
_WEIGHTS = (0.3, 0.15, 0.25, 0.25, 0.05)


def generate_corpus(n_sentences: int = 40_000, seed: int = 0) -> list[list[str]]:
    """Sample ``n_sentences`` sentences from the grammar.

    A sentence is about people (30%), animals (15%), places (25%), verbs (25%) or gadgets (5%);
    within a topic the word is drawn with Zipfian weights :math:`\\propto 1/r` (``r`` its rank in
    the lexicon, so ``king``, ``france`` and ``walk`` are the most frequent of their kind), and the
    feature it shows, and the words that show it, uniformly.

    Args:
        n_sentences: number of sentences, at least 1.
        seed: seed of the sampler (a ``random.Random``), at least 0.

    Returns:
        A list of sentences, each a list of lower-case tokens (3 to 6 tokens).
    """
    check_int("n_sentences", n_sentences, minimum=1)
    check_int("seed", seed, minimum=0)
    rng = random.Random(seed)
    makers = rng.choices(_MAKERS, weights=_WEIGHTS, k=n_sentences)
    return [make(rng) for make in makers]


# --------------------------------------------------------------------------------------------
# vocabulary and encoding
# --------------------------------------------------------------------------------------------
@dataclass
class Vocab:
    """Words sorted by decreasing count (ties alphabetically) and their counts."""

    words: list[str]  #: ``words[i]`` is the word with id ``i``
    counts: torch.Tensor  #: ``(V,)`` int64, how often each word occurs in the corpus
    index: dict[str, int] = field(init=False, repr=False)  #: word -> id

    def __post_init__(self) -> None:
        if not isinstance(self.words, list) or not all(isinstance(w, str) for w in self.words):
            raise TypeError("words must be a list of strings")
        if len(set(self.words)) != len(self.words):
            raise ValueError("words must not repeat")
        counts = self.counts
        if not isinstance(counts, torch.Tensor) or counts.dtype != torch.long:
            raise TypeError(f"counts must be an int64 torch.Tensor, got {type(counts).__name__}")
        if counts.shape != (len(self.words),):
            raise ValueError(f"counts must have shape ({len(self.words)},), one per word, "
                             f"got {tuple(counts.shape)}")
        if (counts < 0).any():
            raise ValueError("counts must be >= 0")
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, words: list[str]) -> torch.Tensor:
        """The ids of ``words`` as an ``(len(words),)`` int64 tensor; unknown words raise."""
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError(f"words {unknown} are not in the vocabulary of {len(self)} words")
        return torch.tensor([self.index[w] for w in words], dtype=torch.long)


def build_vocab(sentences: list[list[str]]) -> Vocab:
    """Count the words of ``sentences`` (a list of token lists) into a :class:`Vocab`."""
    if not isinstance(sentences, list) or not sentences:
        raise ValueError("sentences must be a non-empty list of token lists")
    counter = Counter(token for sentence in sentences for token in sentence)
    words = sorted(counter, key=lambda w: (-counter[w], w))
    return Vocab(words, torch.tensor([counter[w] for w in words], dtype=torch.long))


def encode(sentences: list[list[str]], vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``sentences`` into token ids and sentence ids.

    Returns:
        ``tokens`` ``(N,)`` int64 word ids and ``sentence_ids`` ``(N,)`` int64, the index of the
        sentence each token belongs to (context windows never cross a sentence boundary).
    """
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")
    if not isinstance(sentences, list) or not sentences:
        raise ValueError("sentences must be a non-empty list of token lists")
    tokens = vocab.ids([w for s in sentences for w in s])
    lengths = torch.tensor([len(s) for s in sentences])
    sentence_ids = torch.repeat_interleave(torch.arange(len(sentences)), lengths)
    return tokens, sentence_ids


def analogy_questions(vocab: Vocab, relation: str) -> torch.Tensor:
    """All questions ``a : a* = b : b*`` of one relation, as word ids.

    Every ordered pair of two different pairs ``(a, a*)``, ``(b, b*)`` of
    ``RELATIONS[relation]`` is one question, so a relation with ``m`` pairs gives ``m(m-1)``.

    Returns:
        ``(Q, 4)`` int64 tensor with columns ``a, a*, b, b*``.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {sorted(RELATIONS)}, got {relation!r}")
    pairs = RELATIONS[relation]
    rows = [[*p, *q] for p in pairs for q in pairs if p != q]
    return torch.stack([vocab.ids(row) for row in rows])
