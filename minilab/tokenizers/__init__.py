"""Text to token ids and back: one token per character (char.py) or byte-level BPE (bpe.py)."""
