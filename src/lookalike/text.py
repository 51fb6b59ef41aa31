"""From free text to ImageNet classes, for searching photos by words.

`TextMatcher.match(text)` tries, in this order, and stops at the first step that finds classes:

1. WordNet on the whole query (lower-cased, stop words dropped, plural made singular, irregular
   plurals too: "people" -> "person"): it is looked up among the lemmas of the classes and of
   their hypernyms. A hit covers every class under that synset, so "dog" covers all 118 dog
   breeds, "vehicle" 71 classes, "bike" both bicycles and motorcycles, each with weight 1.
   A few everyday words get extra synsets (EXTRA_SENSES): "vehicle" also covers buses,
   "elephant" the tusker, and words for people ("people", "man", "child", ...) cover the three
   person classes plus, at half weight, the 49 clothing classes, since ImageNet has no "person"
   class and photos of people are tagged by what they wear.
2. The sentence model (the packaged all-MiniLM-L6-v2, through ONNX Runtime; lookalike.sentence)
   on the whole query: its cosine with a text for each class (its names and its description).
   If the best class reaches MIN_SIMILARITY, the classes within `margin` of it (at most
   `max_classes`) are kept, weighted by how close they come to the best. "a cup of coffee" ->
   coffee mug, cup, espresso; "a red bus" -> school bus, trolleybus, minibus.
   Parts of the phrase (each content word, each pair of neighbouring words) that name a WordNet
   synset add its classes: "dog playing in the snow" -> snowplow, dogsled... plus the 118 dogs.
3. If the whole phrase is too far from every class, each part goes through steps 1 and 2 on
   its own, and the classes they find are merged (a class keeps its best weight). "sunset at
   the beach": "sunset" matches nothing, "beach" matches seashore and lakeside. The words
   that matched nothing are reported (`TextMatch.unmatched`).

If nothing matches, the answer says so: `TextMatch.classes` is empty and `TextMatch.nearest`
lists the closest classes with their cosines, for the caller to show.

The 1000 class embeddings ship with lookalike (lookalike/data/, float16, made by
scripts/make_class_embeddings.py); the sentence model is exported to ONNX on first use and
cached.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from lookalike.backbone.facts import cache_dir
from lookalike.errors import ConfigError
from lookalike.labels import NUM_CLASSES, class_descriptions, class_names, hierarchy
from lookalike.sentence import TEXT_EXPORT_VERSION, SentenceEncoder

log = logging.getLogger(__name__)

EMBED_VERSION = 1  # bump when the class texts change (and re-run make_class_embeddings.py)
SHIPPED_EMBEDDINGS = f"class_text_embeddings_v{EMBED_VERSION}.npy"
STOPWORDS = frozenset(
    "a an the of some with and in on at by to for from under over near photo photos picture "
    "pictures image images is are".split()
)
DEFAULT_MARGIN = 0.10
DEFAULT_MAX_CLASSES = 8
# Below this cosine the best class is unrelated to the query (measured: "beach" -> seashore
# 0.53, "kitten" -> Egyptian cat 0.46, but "sunset" -> sunglasses 0.37): no classes from it.
MIN_SIMILARITY = 0.40
NEAREST_SHOWN = 5

# Irregular plurals people type; regular ones are handled by _singulars.
IRREGULAR_PLURALS = {
    "people": "person",
    "persons": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "teeth": "tooth",
    "feet": "foot",
    "wolves": "wolf",
    "knives": "knife",
    "leaves": "leaf",
    "loaves": "loaf",
    "oxen": "ox",
    "sheep": "sheep",
    "fish": "fish",
}

_PERSON = (("n00007846", 1.0), ("n03051540", 0.5))  # person; clothing, article of clothing

# Everyday words whose WordNet synsets miss classes people expect under them: word -> extra
# (synset wnid, weight) searched together with the word's own senses (weight 1). Small on
# purpose; each entry is a WordNet quirk seen in use. "vehicle": buses and trains sit under
# "public transport", a sibling of "vehicle" under "conveyance". "elephant": the tusker class
# sits under "mammal". People: ImageNet-1k has only three person classes (ballplayer, groom,
# scuba diver); photos of people are tagged by their clothes (suit, jersey, crash helmet...).
EXTRA_SENSES: dict[str, tuple[tuple[str, float], ...]] = {
    "vehicle": (("n04019101", 1.0),),  # public transport: buses, trolleybus, bullet train
    "elephant": (("n01871265", 1.0),),  # tusker
    **{
        word: _PERSON
        for word in (
            "person",
            "man",
            "woman",
            "child",
            "kid",
            "boy",
            "girl",
            "human",
            "crowd",
            "family",
            "friend",
            "portrait",
            "selfie",
        )
    },
}


@dataclass(frozen=True, slots=True)
class ClassMatch:
    """A class a query matched, with its weight (1 = as good as the best) and why."""

    class_id: int
    weight: float
    via: str  # "wordnet:<synset lemma>" or "embedding:<cosine>", prefixed "<part>: " for parts


@dataclass(frozen=True)
class TextMatch:
    """What a text query means in ImageNet classes, and why.

    `classes`: what the search uses (empty when nothing in ImageNet-1k is close enough);
    `nearest`: the classes closest to the whole query by the sentence model, (class id,
    cosine), best first (empty when WordNet answered and the model was not needed);
    `unmatched`: the query's words that matched nothing
    when it was taken apart (step 3)."""

    text: str
    classes: tuple[ClassMatch, ...]
    nearest: tuple[tuple[int, float], ...] = ()
    unmatched: tuple[str, ...] = field(default_factory=tuple)

    def weights(self) -> dict[int, float]:
        return {m.class_id: m.weight for m in self.classes}

    def explain(self) -> str:
        """One sentence for a user: what the query was matched to, or why nothing was."""
        names = class_names()
        if not self.classes:
            near = ", ".join(f"{_short(names[i])} {s:.2f}" for i, s in self.nearest)
            return (
                f"no ImageNet class is close enough to {self.text!r} (the nearest: {near}; "
                f"at least {MIN_SIMILARITY:.2f} is needed); search for an object the photos "
                f"show, e.g. 'beach', 'dog', 'a cup of coffee'"
            )
        top = sorted(self.classes, key=lambda m: -m.weight)[:NEAREST_SHOWN]
        shown = ", ".join(_short(names[m.class_id]) for m in top)
        more = f" and {len(self.classes) - len(top)} more" if len(self.classes) > len(top) else ""
        skipped = f"; not matched: {', '.join(self.unmatched)}" if self.unmatched else ""
        return f"{self.text!r} matched {shown}{more}{skipped}"

    def to_dict(self) -> dict:
        names = class_names()
        return {
            "classes": [
                {"class_id": m.class_id, "name": names[m.class_id], "weight": round(m.weight, 4)}
                for m in self.classes
            ],
            "nearest": [
                {"class_id": i, "name": names[i], "similarity": round(s, 4)}
                for i, s in self.nearest
            ],
            "unmatched": list(self.unmatched),
        }


def _short(name: str) -> str:
    return name.split(",")[0]


def content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9][a-z0-9'\-]*", text.lower())
    return [w for w in words if w not in STOPWORDS]


def normalize(text: str) -> str:
    return " ".join(content_words(text))


def _singulars(phrase: str) -> list[str]:
    """The phrase and plausible singulars of its last word (photos of 'dogs', 'buses',
    'people')."""
    head, _, last = phrase.rpartition(" ")
    out = [phrase]
    cands = []
    if last in IRREGULAR_PLURALS:
        cands.append(IRREGULAR_PLURALS[last])
    if last.endswith("ies") and len(last) > 4:
        cands.append(last[:-3] + "y")
    if last.endswith(("ses", "xes", "zes", "ches", "shes")):
        cands.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss"):
        cands.append(last[:-1])
    for c in cands:
        out.append(f"{head} {c}" if head else c)
    return out


def wordnet_classes(text: str) -> list[ClassMatch]:
    """Classes under the WordNet synsets whose lemma is the (normalized) query, plus the
    synsets EXTRA_SENSES adds for it; [] if none."""
    phrase = normalize(text)
    if not phrase:
        return []
    h = hierarchy()
    senses = h["senses"]
    for candidate in _singulars(phrase):
        own = senses.get(candidate) or senses.get(candidate.replace(" ", "-")) or []
        wanted = {w: 1.0 for w in own}
        for w, weight in EXTRA_SENSES.get(candidate, ()):
            wanted[w] = max(wanted.get(w, 0.0), weight)
        if not wanted:
            continue
        out = []
        for class_id in range(NUM_CLASSES):
            hits = [w for w in h["ancestors"][str(class_id)] if w in wanted]
            if hits:
                best = max(hits, key=lambda w: wanted[w])
                out.append(ClassMatch(class_id, wanted[best], f"wordnet:{h['synsets'][best][0]}"))
        if out:
            return out
    return []


def _parts(words: list[str]) -> list[str]:
    """Each pair of neighbouring content words, then each word ('ice cream' before 'ice')."""
    pairs = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return pairs + words


class TextMatcher:
    """Maps text to weighted ImageNet classes. One per process is enough (`default_matcher`)."""

    def __init__(self, *, cache: Path | None = None) -> None:
        self._encoder: SentenceEncoder | None = None
        self._class_emb: np.ndarray | None = None
        self._cache = cache
        self._lock = threading.Lock()

    # -- the sentence model ------------------------------------------------------------------

    @property
    def encoder(self) -> SentenceEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = SentenceEncoder()
            return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized (N, 384) embeddings (the ONNX sentence model; no torch)."""
        return self.encoder.encode(texts)

    def _cache_file(self) -> Path:
        if self._cache is not None:
            return self._cache
        name = f"imagenet1k-x{TEXT_EXPORT_VERSION}-v{EMBED_VERSION}.npy"
        return cache_dir() / "text" / name

    @property
    def class_embeddings(self) -> np.ndarray:
        """(1000, 384) L2-normalized float32 embeddings of the class texts: the shipped file,
        else a cached computation."""
        if self._class_emb is not None:
            return self._class_emb
        shipped = shipped_class_embeddings()
        if shipped is not None:
            self._class_emb = shipped
            return shipped
        file = self._cache_file()
        if file.is_file():
            try:
                emb = np.load(file)
                if emb.shape[0] == NUM_CLASSES:
                    self._class_emb = emb
                    return emb
            except (OSError, ValueError):
                log.warning("ignoring unreadable cache %s", file)
        log.info("embedding the %d class texts (once)", NUM_CLASSES)
        emb = self.embed(class_texts())
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, file)
        self._class_emb = emb
        return emb

    # -- matching ----------------------------------------------------------------------------

    def _select(
        self, sims: np.ndarray, margin: float, max_classes: int, label: str = ""
    ) -> list[ClassMatch]:
        order = np.argsort(-sims)[:max_classes]
        best = float(sims[order[0]])
        if best < MIN_SIMILARITY:
            return []
        prefix = f"{label}: " if label else ""
        return [
            ClassMatch(
                int(i),
                float(1.0 - (best - sims[i]) / (2 * margin)),
                f"{prefix}embedding:{sims[i]:.3f}",
            )
            for i in order
            if sims[i] >= best - margin
        ]

    def embedding_classes(
        self,
        text: str,
        *,
        margin: float = DEFAULT_MARGIN,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> list[ClassMatch]:
        """The classes whose text is closest to the whole query, within `margin` of the best;
        [] when the best is below MIN_SIMILARITY."""
        query = self.embed([text.strip()])[0]
        return self._select(self.class_embeddings @ query, margin, max_classes)

    def match(
        self,
        text: str,
        *,
        margin: float = DEFAULT_MARGIN,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> TextMatch:
        """What `text` means in classes (see the module's docstring for the steps)."""
        words = content_words(text)
        if not words:
            raise ConfigError(f"text query {text!r} has no words to search for")
        found = wordnet_classes(text)
        if found:  # no need to load the sentence model
            return TextMatch(text, tuple(found))
        parts = _parts(words) if len(words) > 1 else []
        # One call to the sentence model for the whole query and all its parts.
        embeddings = self.embed([text.strip(), *parts])
        sims = self.class_embeddings @ embeddings.T  # (1000, 1 + parts)
        whole = sims[:, 0]
        order = np.argsort(-whole)[:NEAREST_SHOWN]
        nearest = tuple((int(i), float(whole[i])) for i in order)
        whole_hits = self._select(whole, margin, max_classes)
        merged: dict[int, ClassMatch] = {m.class_id: m for m in whole_hits}
        covered: set[str] = set()
        for j, part in enumerate(parts, start=1):
            if set(part.split()) <= covered:
                continue  # both words already matched as a pair
            hits = [
                ClassMatch(m.class_id, m.weight, f"{part}: {m.via}") for m in wordnet_classes(part)
            ]
            if not hits and not whole_hits:
                # The whole phrase matched nothing: let each part speak for itself.
                hits = self._select(sims[:, j], margin, max_classes, part)
            if not hits:
                continue
            covered.update(part.split())
            for m in hits:
                if m.class_id not in merged or m.weight > merged[m.class_id].weight:
                    merged[m.class_id] = m
        unmatched = tuple(w for w in words if w not in covered) if merged and not whole_hits else ()
        classes = sorted(merged.values(), key=lambda m: (-m.weight, m.class_id))
        return TextMatch(text, tuple(classes), nearest, unmatched)

    def classes(self, text: str) -> list[ClassMatch]:
        """Weighted classes for a query ([] when nothing in ImageNet-1k is close enough)."""
        return list(self.match(text).classes)


def class_texts() -> list[str]:
    """The text embedded for each class: its names, then its description."""
    names = class_names()
    descriptions = class_descriptions()
    return [
        f"{names[i]}. {descriptions[i]}".strip() if descriptions[i] else names[i]
        for i in range(NUM_CLASSES)
    ]


def shipped_class_embeddings() -> np.ndarray | None:
    """The class-text embeddings shipped in lookalike/data/ as float32 rows of unit length, or
    None if the file is missing or malformed."""
    try:
        with resources.files("lookalike.data").joinpath(SHIPPED_EMBEDDINGS).open("rb") as f:
            emb = np.load(f).astype(np.float32)
    except (OSError, ValueError):
        return None
    if emb.shape != (NUM_CLASSES, 384):
        log.warning("ignoring %s: shape %s", SHIPPED_EMBEDDINGS, emb.shape)
        return None
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


_default: TextMatcher | None = None
_default_lock = threading.Lock()


def default_matcher() -> TextMatcher:
    global _default  # one lazily built matcher per process, like a model registry
    with _default_lock:
        if _default is None:
            _default = TextMatcher()
        return _default
