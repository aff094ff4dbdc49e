"""Writing text with a trained model: sampling, the cached decoders, text streaming, the interactive prompt."""
