"""Models built from GGUF files, and the tokenizers they embed."""

from phfe.models.build import build_model
from phfe.models.config import SUPPORTED_ARCHITECTURES, ModelArgs, UnsupportedArchitectureError
from phfe.models.decoder import Decoder
from phfe.models.patcher import GGUFModelPatcher, PatchError
from phfe.models.tokenizer import GGUFTokenizer, UnsupportedTokenizerError, load_tokenizer

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "Decoder",
    "GGUFModelPatcher",
    "GGUFTokenizer",
    "ModelArgs",
    "PatchError",
    "UnsupportedArchitectureError",
    "UnsupportedTokenizerError",
    "build_model",
    "load_tokenizer",
]
