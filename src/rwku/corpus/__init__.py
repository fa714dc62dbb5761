"""Corpora the model writes about a target (the zero-shot setting), cached, and the official precomputed ones."""

from rwku.corpus.build import Corpus, CorpusSpec, build_corpus, official_corpus

__all__ = ["Corpus", "CorpusSpec", "build_corpus", "official_corpus"]
