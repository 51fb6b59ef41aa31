"""Write src/lookalike/data/class_text_embeddings_v<N>.npy: the sentence-model embeddings of
the 1000 ImageNet class texts (lookalike.text.class_texts), float16, rows of unit length.

Run after changing the class texts (and bump lookalike.text.EMBED_VERSION):
    .venv/bin/python scripts/make_class_embeddings.py
tests/integration/test_words.py checks the shipped file against fresh embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.sentence import SentenceEncoder
from lookalike.text import SHIPPED_EMBEDDINGS, class_texts


def main() -> None:
    emb = SentenceEncoder().encode(class_texts())
    out = Path(__file__).resolve().parents[1] / "src" / "lookalike" / "data" / SHIPPED_EMBEDDINGS
    np.save(out, emb.astype(np.float16))
    print(f"wrote {out} {emb.shape}")


if __name__ == "__main__":
    main()
