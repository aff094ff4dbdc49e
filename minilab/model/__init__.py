"""The transformer: its settings (config.py), the model read top to bottom (gpt.py) and its parts."""
