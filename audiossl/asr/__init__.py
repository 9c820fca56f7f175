"""The ASR text stack: vocabularies, CTC decoding (greedy, n-gram LM beam search), LMs, word alignment."""
