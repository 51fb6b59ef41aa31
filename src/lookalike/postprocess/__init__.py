"""Steps after the first nearest-neighbour search: query expansion, database-side
augmentation (qe.py) and localization / region re-ranking (localize.py)."""
