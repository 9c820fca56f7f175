"""The embedded synthetic corpus: espeak-ng speech in LibriSpeech layout with phone alignments."""

from audiossl.data.synth.build import SPLITS, ChapterTask, CorpusSummary, SplitSummary, SynthConfig, build_corpus, plan
from audiossl.data.synth.grammar import SentenceGrammar, Vocabulary, build_vocabulary
from audiossl.data.synth.speakers import Speaker, draw_speakers

__all__ = [
    "SPLITS", "ChapterTask", "CorpusSummary", "SplitSummary", "SynthConfig", "build_corpus", "plan",
    "SentenceGrammar", "Vocabulary", "build_vocabulary", "Speaker", "draw_speakers",
]  # fmt: skip
