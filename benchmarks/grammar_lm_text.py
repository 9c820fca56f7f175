"""LM text for the embedded corpus: sentences of its grammar that no audio reads, one per line.

The stand-in for LibriSpeech's LM corpus (``librispeech-lm-norm.txt``: book text without audio, the text of the
Libri-light protocol's 4-gram). Used by the few-label table's second LM column (``LM_TEXT=<this file> make
few-label``, or ``audiossl-evaluate ... lm.text=<this file>``) and by the self-training measurement
(``audiossl-pseudolabel ... lm.text=<this file>``); README "Few-label ASR". It reports how many sentences of
a manifest's ``.wrd`` it contains: none of any split's for the README's 20,000 at seed 20261206.

    .venv/bin/python benchmarks/grammar_lm_text.py --sentences 20000 --out runs/lm_text.txt \\
        --check manifests/synth/{train_clean,dev_clean,test_clean,test_other}.wrd
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from audiossl.data.synth.build import SynthConfig
from audiossl.data.synth.grammar import SentenceGrammar, build_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--out", required=True)
    parser.add_argument("--check", nargs="*", default=[], help=".wrd files whose lines are looked up in the text")
    args = parser.parse_args()
    corpus = SynthConfig()  # the grammar the corpus was spoken from
    grammar = SentenceGrammar(build_vocabulary(corpus.vocab_size), corpus.min_words, corpus.max_words)
    rng = np.random.default_rng(args.seed)
    lines = [grammar.sample(rng).transcript for _ in range(args.sentences)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    known = set(lines)
    for path in args.check:
        sentences = Path(path).read_text(encoding="utf-8").splitlines()
        print(f"{path}: {sum(s in known for s in sentences)} of {len(sentences)} sentences are in the LM text")
    print(f"wrote {len(lines)} sentences ({len({w for line in lines for w in line.split()})} words) to {args.out}")


if __name__ == "__main__":
    main()
