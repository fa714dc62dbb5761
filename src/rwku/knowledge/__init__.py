"""What a model knows before unlearning: exact memorization and NLL per text, per source and per target (Fig. 1)."""

from rwku.knowledge.memorization import (
    DEFAULT_WINDOW,
    RWKU,
    UNSEEN,
    MemorizationJob,
    Source,
    Text,
    read_source_file,
    rwku_source,
    score_source,
    unseen_source,
)

__all__ = ["DEFAULT_WINDOW", "RWKU", "UNSEEN", "MemorizationJob", "Source", "Text", "read_source_file", "rwku_source",
           "score_source", "unseen_source"]
