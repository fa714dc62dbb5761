"""What a model knows before unlearning: exact memorization and NLL per text, per source and per target (Fig. 1);
planted models (:mod:`rwku.knowledge.planting`, imported here so that ``smollm2-135m-demo`` is registered with the
loader whenever this package is imported); probes for a new target (:mod:`rwku.knowledge.build_target`)."""

from rwku.knowledge import planting  # noqa: F401  (registers the planted models with the loader)

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
