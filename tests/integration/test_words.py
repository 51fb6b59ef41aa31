"""Classification, tags, text search and duplicates with the real CNN and the real sentence
model, on scikit-image's shipped photos."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lookalike.engine import Index
from lookalike.errors import ConfigError
from lookalike.index.catalog import _SCHEMA_V1, SCHEMA_VERSION, Catalog, NewImage
from lookalike.labels import class_names, softmax, top_classes
from lookalike.text import wordnet_classes

NAMES = ("chelsea", "coffee", "rocket", "astronaut")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    from lookalike.samples import sample_photos

    out = tmp_path_factory.mktemp("words_photos")
    photos = sample_photos(NAMES)
    for name, image in photos.items():
        image.save(out / f"{name}.jpg", quality=92)
    from skimage import data

    from lookalike.samples import _to_rgb

    _to_rgb(data.stereo_motorcycle()[0]).save(out / "motorcycle.jpg", quality=92)
    shutil.copy(out / "chelsea.jpg", out / "chelsea_copy.jpg")  # exact duplicate
    coffee = photos["coffee"]
    # resized to 75 % and recompressed: a near duplicate
    small = coffee.resize((coffee.width * 3 // 4, coffee.height * 3 // 4))
    small.save(out / "coffee_small.jpg", quality=70)
    return out


@pytest.fixture(scope="module")
def index(photo_dir, tmp_path_factory):
    idx = Index.create(tmp_path_factory.mktemp("words_idx") / "idx")
    idx.sync([photo_dir])
    yield idx
    idx.close()


def _name(path: str) -> str:
    return Path(path).stem


# -- pure pieces ---------------------------------------------------------------------------------


def test_softmax_and_top_classes():
    logits = np.zeros(1000, dtype=np.float32)
    logits[[3, 7]] = [np.log(3.0), np.log(1.0) + 1e-6]
    probs = softmax(logits)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    top = top_classes(logits, 2)
    assert [c for c, _ in top] == [3, 7]
    assert top[0][1] == pytest.approx(3 / 1002, rel=1e-4)  # 3 + 1 + 998 * 1
    with pytest.raises(ConfigError):
        top_classes(np.zeros(10))


def test_class_names_are_the_classic_lists():
    assert class_names()[671] == "mountain bike, all-terrain bike, off-roader"


def test_wordnet_hierarchy_covers_general_words():
    names = class_names()
    dogs = {names[m.class_id] for m in wordnet_classes("dogs")}
    assert len(dogs) == 118 and "Chihuahua" in dogs and "tabby, tabby cat" not in dogs
    bike = {m.class_id for m in wordnet_classes("bike")}
    assert {671, 444, 665} <= bike  # mountain bike, bicycle-built-for-two, moped
    vehicle = {m.class_id for m in wordnet_classes("a vehicle")}
    # sports car, minivan, mountain bike; not a tabby
    assert {817, 656, 671} <= vehicle and 281 not in vehicle
    # WordNet files buses under "public transport" and the tusker under "mammal": the
    # documented extra senses (text.EXTRA_SENSES) add them to "vehicle" and "elephant".
    assert {654, 779, 874} <= vehicle  # minibus, school bus, trolleybus
    assert {m.class_id for m in wordnet_classes("vehicles")} == vehicle
    elephants = {m.class_id for m in wordnet_classes("elephants")}
    assert elephants == {101, 385, 386}  # tusker, Indian and African elephant
    assert wordnet_classes("beach") == []  # not an ancestor of any class: sentence model's job


def test_v1_catalog_upgrades_to_labels(tmp_path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '0')")
    db.commit()
    db.close()
    with Catalog(path) as cat:
        (a,) = cat.write_batch(add=[NewImage("a", 1, 1, "h", 1, 1, np.ones(4), [(5, 0.6)])])
        (b,) = cat.write_batch(add=[NewImage("b", 1, 1, "h", 1, 1, np.ones(4), [(5, 0.9)])])
        assert cat.search_labels({5: 1.0}, 10) == [(b, pytest.approx(0.9)), (a, pytest.approx(0.6))]
        cat.write_batch(remove_ids=[b])
        assert cat.labels([a, b]) == {a: [(5, pytest.approx(0.6))]}
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    # v3: the perceptual hash columns exist, empty for rows written without one
    assert db.execute("SELECT phash FROM images WHERE path = 'a'").fetchone() == (None,)


# -- with the real models ------------------------------------------------------------------------


def test_index_stores_tags_from_the_same_pass(index):
    hits = index.search_text("cat", 3)
    assert hits and _name(hits[0].path).startswith("chelsea")
    assert hits[0].tags and any("cat" in t["name"] for t in hits[0].tags)
    assert all(len(h.tags) == 5 for h in hits)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("motorbike", "motorcycle"),
        ("bike", "motorcycle"),
        ("coffee", "coffee"),
        ("a cup of coffee", "coffee"),
        ("kitty cat", "chelsea"),
    ],
)
def test_text_search_words_and_phrases(index, text, expected):
    hits = index.search_text(text, 2)
    assert hits, text
    assert _name(hits[0].path).startswith(expected), [h.path for h in hits]


def test_text_search_with_nothing_matching(index):
    hits = index.search_text("elephant", 5)
    assert hits == []
    # it says why: the words matched elephant classes, but no image is tagged with them
    assert "elephant" in hits.note.lower() and "no indexed image" in hits.note
    with pytest.raises(ConfigError):
        index.search_text("   ", 5)


def test_text_search_far_from_every_class_names_the_nearest(index):
    hits = index.search_text("city at night", 5)
    assert hits == [] and not hits.match.classes
    assert len(hits.match.nearest) == 5
    names = [class_names()[i] for i, _ in hits.match.nearest]
    assert names[0].split(",")[0] in hits.note and "nearest" in hits.note


def test_text_search_on_an_index_without_tags_says_so(index, tmp_path):
    ids, vectors = index.catalog.descriptors(list(range(1, 4)))
    with Index.create(tmp_path / "bare") as bare:
        bare.add_vectors([f"v{i}.jpg" for i in ids], vectors)
        hits = bare.search_text("a cup of coffee", 5)
    assert hits == [] and hits.match.classes  # the words matched, the index has no tags
    assert "stores no tags" in hits.note and "lookalike index" in hits.note


def test_people_find_the_astronaut(index):
    # ImageNet has no person class: people words cover the person classes and, at half
    # weight, clothing; the astronaut photo is tagged football helmet / crash helmet.
    for text in ("people", "a person"):
        hits = index.search_text(text, 3)
        assert hits and _name(hits[0].path) == "astronaut", (text, [h.path for h in hits])


@pytest.mark.parametrize(
    ("text", "wanted", "unwanted"),
    [
        ("sunset at the beach", {"seashore", "lakeside"}, {"sunglasses"}),
        ("a sandy beach by the sea", {"seashore", "sandbar"}, set()),
        ("people", {"ballplayer", "groom", "scuba diver", "suit", "jersey"}, set()),
        ("flowers", {"daisy"}, set()),
        ("a cup of coffee", {"espresso", "cup", "coffee mug"}, {"teapot"}),
        ("a red bus", {"school bus", "trolleybus", "minibus"}, {"red wine"}),
        ("dog playing in the snow", {"snowplow", "golden retriever"}, set()),
    ],
)
def test_phrases_match_sensible_classes(text, wanted, unwanted):
    from lookalike.text import default_matcher

    match = default_matcher().match(text)
    got = {class_names()[m.class_id].split(",")[0] for m in match.classes}
    assert wanted <= got, (text, sorted(got))
    assert not (unwanted & got), (text, sorted(got))


def test_sunset_at_the_beach_reports_the_word_it_could_not_use():
    from lookalike.text import default_matcher

    match = default_matcher().match("sunset at the beach")
    assert match.unmatched == ("sunset",)
    assert "not matched: sunset" in match.explain()


def test_onnx_sentence_model_equals_sentence_transformers():
    import sentence_transformers as st  # the reference; a dev dependency, not a runtime one

    from lookalike.sentence import SentenceEncoder, model_dir

    texts = ["sunset at the beach", "a cup of coffee", "x " * 400, "Ünïcödé café", "dog"]
    ours = SentenceEncoder().encode(texts)
    ref = st.SentenceTransformer(str(model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    assert np.abs(ours - ref).max() < 1e-4


def test_shipped_class_embeddings_match_the_model():
    from lookalike.sentence import SentenceEncoder
    from lookalike.text import class_texts, shipped_class_embeddings

    shipped = shipped_class_embeddings()
    assert shipped is not None and shipped.shape == (1000, 384)
    rows = list(range(0, 1000, 37))
    fresh = SentenceEncoder().encode([class_texts()[i] for i in rows])
    cos = np.sum(fresh * shipped[rows], axis=1)
    assert cos.min() > 0.999, cos.min()


def test_tag_filter_and_boost(index, photo_dir):
    plain = index.search(photo_dir / "chelsea.jpg", 6)
    assert len(plain) >= 4
    filtered = index.search(photo_dir / "chelsea.jpg", 6, tag="coffee")
    assert filtered and all(_name(h.path).startswith("coffee") for h in filtered)
    boosted = index.search(photo_dir / "rocket.jpg", 6, tag="coffee", tag_mode="boost")
    unboosted = index.search(photo_dir / "rocket.jpg", 6)
    assert {_name(h.path) for h in boosted} == {_name(h.path) for h in unboosted}
    with pytest.raises(ConfigError):
        index.search(photo_dir / "chelsea.jpg", 3, tag="coffee", tag_mode="sideways")


def test_tag_filter_with_query_expansion(index, photo_dir):
    query = photo_dir / "chelsea.jpg"
    got = index.search(query, 6, tag="coffee", expand="aqe:n=3")
    assert got and all(_name(h.path).startswith("coffee") for h in got)
    # the scores are the expanded query's (expanded over the whole index, then filtered)
    expanded = {h.id: h.score for h in index.search(query, 50, expand="aqe:n=3")}
    plain = {h.id: h.score for h in index.search(query, 50)}
    for h in got:
        assert h.score == pytest.approx(expanded[h.id], abs=1e-5)
    assert any(abs(h.score - plain[h.id]) > 1e-3 for h in got)


def test_classify(index, photo_dir):
    labels = index.classify(photo_dir / "coffee.jpg", k=5)
    assert labels[0].name == "espresso" and len(labels) == 5
    assert labels[0].prob >= labels[1].prob


def test_duplicates(index):
    groups = index.duplicates()
    exact = [g for g in groups if g.kind == "exact"]
    near = [g for g in groups if g.kind == "near"]
    assert [sorted(_name(p) for p in g.paths) for g in exact] == [["chelsea", "chelsea_copy"]]
    coffee = [g for g in near if any(_name(p) == "coffee" for p in g.paths)]
    assert coffee and {"coffee", "coffee_small"} <= {_name(p) for p in coffee[0].paths}
    for g in near:  # different photos never end up together
        assert len({_name(p).split("_")[0] for p in g.paths}) == 1, g.paths
    assert index.duplicates(near=False) == exact


def test_cli_classify_search_text_and_dupes(index, photo_dir):
    exe = [sys.executable, "-m", "lookalike"]
    out = subprocess.run(
        [*exe, "classify", str(photo_dir / "coffee.jpg"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["labels"][0]["name"] == "espresso" and data["labels"][0]["prob"] > 0.5
    out = subprocess.run(
        [*exe, "search", "--text", "espresso", "--index", str(index.path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    hits = json.loads(out.stdout)["hits"]
    assert _name(hits[0]["path"]).startswith("coffee") and hits[0]["tags"]
    out = subprocess.run(
        [*exe, "dupes", "--index", str(index.path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = [g["kind"] for g in json.loads(out.stdout)["groups"]]
    assert "exact" in kinds and "near" in kinds
    bad = subprocess.run(
        [*exe, "search", "--index", str(index.path)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--text" in bad.stderr
