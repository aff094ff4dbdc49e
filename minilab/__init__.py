"""mini-transformer-lab: a small GPT-style language model to train, sample and look inside.

    from minilab import ModelConfig, train, load_model, generate_text
    result = train("example_data/ai_intro.txt", ModelConfig(n_layers=2, d_model=64), epochs=3)
    model, tokenizer, _ = load_model("checkpoints/best_model.pt")
    print(generate_text(model, tokenizer, "The model", max_new_tokens=100))

Importing the package does nothing but define things: no files, no devices, no randomness.
"""

from minilab.checkpoint import load_checkpoint, load_model, save_checkpoint
from minilab.errors import LabError
from minilab.generation.decode import generate
from minilab.generation.sampling import sample_next
from minilab.generation.textgen import generate_text, stream_text
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.tokenizers.bpe import BPETokenizer
from minilab.tokenizers.char import CharTokenizer
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer, TrainResult, train

__all__ = [
    "BPETokenizer",
    "GPT",
    "CharTokenizer",
    "LabError",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "generate",
    "generate_text",
    "load_checkpoint",
    "load_model",
    "sample_next",
    "save_checkpoint",
    "stream_text",
    "train",
]
__version__ = "0.1.0"
