"""PHFE's decoder against transformers loading the same GGUF file, and GGUFModelPatcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES
from transformers import AutoModelForCausalLM

from phfe.inference import UnsupportedTensorTypeError
from phfe.models.build import build_model
from phfe.models.config import UnsupportedArchitectureError
from phfe.models.decoder import Decoder
from phfe.models.patcher import GGUFModelPatcher, PatchError
from tests.gguf_factory import TINY_MODELS, T, TinyModel, write_gguf, write_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def log_probs(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return getattr(out, "logits", out).float().log_softmax(-1)


def assert_same_predictions(ours: torch.Tensor, reference: torch.Tensor, tolerance: float = 1e-3) -> None:
    assert (ours - reference).abs().max().item() <= tolerance
    assert torch.equal(ours.argmax(-1), reference.argmax(-1))


def load_transformers(path: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def scramble(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.normal_()


@pytest.fixture(scope="module", params=list(TINY_MODELS))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, Path]:
    spec = TINY_MODELS[request.param]
    return spec, write_tiny_model(tmp_path_factory.mktemp("tiny") / f"{request.param}.gguf", spec)


def test_tiny_models_match_transformers(tiny: tuple[TinyModel, Path]) -> None:
    spec, path = tiny
    tokens = torch.randint(0, spec.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    assert_same_predictions(log_probs(build_model(path), tokens), log_probs(load_transformers(path), tokens))


def test_patcher_gives_a_transformers_model_phfe_logits(tiny: tuple[TinyModel, Path]) -> None:
    spec, path = tiny
    hf = load_transformers(path)
    scramble(hf)
    with GGUFModelPatcher(path).patch_context(hf) as stats:
        assert stats["loaded"] > 0 and stats["skipped"] == 0
    tokens = torch.randint(0, spec.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    assert_same_predictions(log_probs(hf, tokens), log_probs(build_model(path), tokens))


def test_patch_stats_and_dtype(tiny: tuple[TinyModel, Path]) -> None:
    spec, path = tiny
    model = build_model(path, dtype=torch.bfloat16)
    stats = model.load_stats
    assert stats["loaded"] == len(dict(model.named_parameters())) and stats["skipped"] == 0
    assert stats["bytes_read"] > 0 and stats["parameters"] == sum(p.numel() for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    tokens = torch.arange(16)[None] % spec.vocab_size
    exact = log_probs(build_model(path), tokens)
    assert (log_probs(model, tokens) - exact).abs().max() < 0.5


def test_rope_freqs_divide_the_frequencies(tmp_path: Path) -> None:
    """A rope_freqs tensor of 2s halves every frequency: the same as linear RoPE scaling by 2."""
    base = TinyModel("llama")
    tokens = torch.arange(30)[None]
    with_factors = build_model(write_tiny_model(tmp_path / "factors.gguf", TinyModel("llama", rope_freqs=2.0)))
    scaled = build_model(write_tiny_model(tmp_path / "scaled.gguf", TinyModel("llama", rope_scale=2.0)))
    plain = build_model(write_tiny_model(tmp_path / "plain.gguf", base))
    ones = build_model(write_tiny_model(tmp_path / "ones.gguf", TinyModel("llama", rope_freqs=1.0)))
    torch.testing.assert_close(log_probs(with_factors, tokens), log_probs(scaled, tokens))
    torch.testing.assert_close(log_probs(ones, tokens), log_probs(plain, tokens))
    assert not torch.allclose(log_probs(plain, tokens), log_probs(scaled, tokens))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_a_shape_mismatch_leaves_the_model_untouched(tmp_path: Path) -> None:
    model = build_model(write_tiny_model(tmp_path / "a.gguf", TinyModel("llama")))
    wider = write_tiny_model(tmp_path / "b.gguf", TinyModel("llama", ffn_dim=128), seed=5)
    before = snapshot(model)
    mismatch = pytest.raises(PatchError, match=r"'blk\.0\.ffn_gate\.weight' has shape \(128, 64\)")
    with mismatch as err, GGUFModelPatcher(wider).patch_context(model):
        pass
    assert "b.gguf" in str(err.value)
    assert_unchanged(model, before)


def test_missing_tensors_and_unsupported_types_leave_the_model_untouched(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "a.gguf", TinyModel("llama", tied=False))
    model = build_model(path)
    before = snapshot(model)
    tied = write_tiny_model(tmp_path / "tied.gguf", TinyModel("llama"), seed=3)  # no output.weight
    with pytest.raises(PatchError, match="output.weight"), GGUFModelPatcher(tied).patch_context(model):
        pass
    assert_unchanged(model, before)

    odd = TinyModel("llama", dim=256, ffn_dim=256, n_heads=4, head_dim=64)
    odd_model = build_model(write_tiny_model(tmp_path / "odd.gguf", odd))
    tensors = {name: (T.F32, p.detach().numpy()) for name, p in odd_model.state_dict().items()}
    raw = np.random.default_rng(0).integers(0, 256, (256, GGML_QUANT_SIZES[T.IQ2_XXS][1]), dtype=np.uint8)
    tensors["blk.1.ffn_up.weight"] = (T.IQ2_XXS, raw)
    iq2 = write_gguf(tmp_path / "iq2.gguf", tensors, arch="llama")
    before = snapshot(odd_model)
    unsupported = pytest.raises(UnsupportedTensorTypeError, match=r"'blk\.1\.ffn_up\.weight'.*IQ2_XXS")
    with unsupported, GGUFModelPatcher(iq2).patch_context(odd_model):
        pass
    assert_unchanged(odd_model, before)


def test_unknown_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "mamba.gguf", {"x.weight": (T.F32, np.zeros(4, np.float32))}, arch="mamba")
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'.*llama, qwen2, qwen3, gemma3"):
        build_model(path)


def test_patcher_refuses_unknown_model_classes(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "a.gguf", TinyModel("llama"))
    refused = pytest.raises(PatchError, match="cannot patch a Linear")
    with refused, GGUFModelPatcher(path).patch_context(torch.nn.Linear(2, 2)):
        pass


@pytest.fixture(scope="module")
def real_pair(real_model_path: Path) -> tuple[Decoder, torch.nn.Module]:
    return build_model(real_model_path), load_transformers(real_model_path)


@pytest.mark.real_model
def test_real_models_match_transformers(real_pair: tuple[Decoder, torch.nn.Module]) -> None:
    ours, reference = real_pair
    tokens = torch.randint(10, 20000, (1, 600), generator=torch.Generator().manual_seed(0))  # > gemma's window
    assert_same_predictions(log_probs(ours, tokens), log_probs(reference, tokens))


@pytest.mark.real_model
def test_patching_a_real_transformers_model(real_pair: tuple[Decoder, torch.nn.Module], real_model_path: Path) -> None:
    ours, reference = real_pair
    scramble(reference)
    with GGUFModelPatcher(real_model_path).patch_context(reference) as stats:
        assert stats["skipped"] == 0
    tokens = torch.randint(10, 20000, (1, 120), generator=torch.Generator().manual_seed(1))
    assert_same_predictions(log_probs(reference, tokens), log_probs(ours, tokens))
