"""The paged, prefix-cached engine against plain full-sequence forward passes of the same model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from phfe.inference.backend import row_scores, score_result
from phfe.inference.engine import Engine
from phfe.inference.kv_cache import CacheFullError, KVCacheManager
from phfe.inference.transformers_backend import TransformersEngine
from phfe.models import Decoder, build_model, load_tokenizer
from tests.gguf_factory import TINY_MODELS, write_tiny_model

TOLERANCE = 1e-4  # nats per token, float32


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma3"])
def tiny_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("engine") / f"{request.param}.gguf", TINY_MODELS[request.param])


def make_engine(path: Path, tmp_path: Path, num_blocks: int = 256, block_size: int = 4, **kwargs) -> Engine:
    model = build_model(path)
    a = model.args
    cache = KVCacheManager(
        num_blocks, block_size, a.n_layers, a.n_kv_heads, a.head_dim, prefix_caching=kwargs.pop("prefix_caching", True)
    )
    return Engine(model, load_tokenizer(path, cache_dir=tmp_path), cache, **kwargs)


def workload(vocab: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """k-shot-like requests: a shared prefix, per-item contexts, several candidates per item."""
    rng = random.Random(seed)
    shots = [rng.randrange(3, vocab) for _ in range(23)]
    requests = []
    for _ in range(5):
        item = [rng.randrange(3, vocab) for _ in range(rng.randrange(1, 9))]
        for _ in range(3):
            continuation = [rng.randrange(3, vocab) for _ in range(rng.randrange(1, 4))]
            requests.append((shots + item, continuation))
    requests.append(([5], [6, 7]))  # a one-token context
    return requests


def reference_scores(model: Decoder, requests: list[tuple[list[int], list[int]]]) -> list[list[float]]:
    scores = []
    for context, continuation in requests:
        rows = torch.arange(len(context) - 1, len(context) + len(continuation) - 1)
        with torch.no_grad():
            logprobs = model(torch.tensor([context + continuation]), logits_rows=rows).log_softmax(-1)[0]
        scores.append([logprobs[j, t].item() for j, t in enumerate(continuation)])
    return scores


def assert_matches(results, expected: list[list[float]]) -> None:
    for result, tokens in zip(results, expected, strict=True):
        assert result.n_tokens == len(tokens)
        assert max(abs(a - b) for a, b in zip(result.token_logprobs, tokens, strict=True)) <= TOLERANCE
        assert abs(result.logprob - sum(tokens)) <= TOLERANCE * len(tokens)


CONFIGS = {
    "default": {},
    "block 16": {"block_size": 16},
    "block 1": {"block_size": 1, "num_blocks": 1024},
    "tiny batches": {"max_batch_tokens": 8},
    "no prefix caching": {"prefix_caching": False},
    "eviction pressure": {"num_blocks": 24},
    "flex backend": {"attention": "flex"},
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_paged_scoring_equals_full_forward(tiny_path: Path, tmp_path: Path, config: str) -> None:
    engine = make_engine(tiny_path, tmp_path, **CONFIGS[config])
    requests = workload(engine.model.args.vocab_size)
    assert_matches(engine.score_tokens(requests), reference_scores(engine.model, requests))


def test_compiled_flex_attention_scores_the_same(tmp_path: Path) -> None:
    """torch.compile'd flex_attention over padded query buckets (gemma 3: sliding-window and global masks)."""
    path = write_tiny_model(tmp_path / "gemma3.gguf", TINY_MODELS["gemma3"])
    engine = make_engine(path, tmp_path, attention="flex_compiled", max_batch_tokens=64)
    requests = workload(engine.model.args.vocab_size)
    assert_matches(engine.score_tokens(requests), reference_scores(engine.model, requests))
    assert engine.stats["steps"] > 1  # several packed steps, each padded to its query bucket


def test_order_and_batch_company_do_not_change_scores(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path)
    requests = workload(engine.model.args.vocab_size, seed=1)
    together = engine.score_tokens(requests)
    shuffled = list(range(len(requests)))
    random.Random(3).shuffle(shuffled)
    again = engine.score_tokens([requests[i] for i in shuffled])
    alone = [make_engine(tiny_path, tmp_path).score_tokens([r])[0] for r in requests[:4]]
    for i, j in enumerate(shuffled):
        assert abs(again[i].logprob - together[j].logprob) <= TOLERANCE
    for a, b in zip(alone, together, strict=False):
        assert abs(a.logprob - b.logprob) <= TOLERANCE and a.is_greedy == b.is_greedy


def test_greedy_flag(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path)
    context = [4, 9, 13, 21]
    with torch.no_grad():
        best = int(engine.model(torch.tensor([context]))[0, -1].argmax())
    other = best + 1 if best + 1 < engine.model.args.vocab_size else best - 1
    greedy, not_greedy = engine.score_tokens([(context, [best]), (context, [other])])
    assert greedy.is_greedy and not not_greedy.is_greedy


def test_shared_prefixes_are_computed_once(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path, block_size=4)
    requests = workload(engine.model.args.vocab_size)
    engine.score_tokens(requests)
    # The optimum: every distinct prefix computed once (tokens the trie of all requests holds), given that a
    # request computes at least from its last context token on.
    trie: set[tuple[int, ...]] = set()
    for context, continuation in requests:
        tokens = tuple(context + continuation)
        trie.update(tokens[: n + 1] for n in range(len(tokens)))
    stats = engine.stats
    assert stats["tokens_computed"] <= 1.1 * len(trie) + len(requests)
    assert stats["tokens_from_cache"] + stats["tokens_computed"] == stats["tokens_requested"]


def naive_greedy(model: Decoder, prompt: list[int], n: int) -> list[int]:
    tokens = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt) :]


@pytest.mark.parametrize("config", ["default", "eviction pressure", "tiny batches"])
def test_generation_equals_argmax_decoding_without_cache(tiny_path: Path, tmp_path: Path, config: str) -> None:
    engine = make_engine(tiny_path, tmp_path, **CONFIGS[config])
    prompts = [[3, 4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 10], [11] * 13]
    expected = [naive_greedy(engine.model, p, 9) for p in prompts]
    eos = engine.tokenizer.eos_token_id
    expected = [e[: e.index(eos)] if eos in e else e for e in expected]
    assert engine.generate_tokens(prompts, max_new_tokens=9) == expected


def test_stop_strings_end_decoding(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path)
    prompt = [3, 4, 5, 6]
    full = engine.generate_tokens([prompt], max_new_tokens=6)[0]
    stop = engine.tokenizer.decode(full[2:4])
    n = next(n for n in range(len(full) + 1) if stop in engine.tokenizer.decode(full[:n]))
    assert engine.generate_tokens([prompt], max_new_tokens=6, stop=[stop])[0] == full[:n]


def test_clear_errors(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path, num_blocks=8, block_size=4)
    limit = engine.model.args.context_length
    with pytest.raises(ValueError, match=f"more than the model's context of {limit}"):
        engine.score_tokens([([1] * limit, [2])])
    with pytest.raises(CacheFullError, match="does not fit the KV cache even when it is empty"):
        engine.score_tokens([([1] * 40, [2])])
    with pytest.raises(ValueError, match="at least one token"):
        engine.score_tokens([([1, 2], [])])
    assert engine.cache.num_used_blocks == 0  # nothing leaked by the failures
    assert engine.score_tokens([([1, 2, 3], [4])])[0].n_tokens == 1


@pytest.mark.real_model
def test_real_model_scoring_and_lm_eval_conventions(smollm2_path: Path) -> None:
    engine = Engine.from_gguf(smollm2_path, memory_gb=0.2, block_size=16)
    assert engine.encode_pair("Question: 2 + 2 = ", "4")[1] == engine.encode_pair("Question: 2 + 2 =", " 4")[1]
    assert engine.encode_pair("", "Paris")[0] == [engine.tokenizer.bos_token_id or engine.tokenizer.eos_token_id]
    shots = "".join(f"The capital of {c} is {x}.\n" for c, x in [("Spain", "Madrid"), ("Italy", "Rome")] * 20)
    pairs = [(shots + f"The capital of {c} is", f" {x}") for c in ("France", "Japan") for x in ("Paris", "Tokyo")]
    results = engine.score(pairs)
    requests = [engine.encode_pair(c, x) for c, x in pairs]
    assert_matches(results, reference_scores(engine.model, requests))
    assert results[0].logprob > results[1].logprob and results[3].logprob > results[2].logprob
    assert engine.stats["tokens_from_cache"] > 0.6 * engine.stats["tokens_requested"]
    assert engine.generate(["The capital of France is"], max_new_tokens=8, stop=["."]) == [" Paris"]


@pytest.mark.real_model
def test_gemma_sliding_window_over_the_cache(gemma3_path: Path) -> None:
    """A shared prefix longer than gemma-3's 512-token window: local layers must see only the window."""
    engine = Engine.from_gguf(gemma3_path, memory_gb=0.2, block_size=16, max_batch_tokens=256)
    rng = random.Random(0)
    prefix = [2] + [rng.randrange(1000, 20000) for _ in range(600)]
    requests = [(prefix + [rng.randrange(1000, 20000)], [rng.randrange(1000, 20000)]) for _ in range(3)]
    assert_matches(engine.score_tokens(requests), reference_scores(engine.model, requests))


def test_the_transformers_backend_agrees(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path)
    reference = TransformersEngine.from_gguf(tiny_path, batch_size=4)
    requests = workload(engine.model.args.vocab_size, seed=2)
    for ours, theirs in zip(engine.score_tokens(requests), reference.score_tokens(requests), strict=True):
        assert abs(ours.logprob - theirs.logprob) <= 1e-3 * ours.n_tokens
        assert ours.is_greedy == theirs.is_greedy
    prompts = [[3, 4, 5], [7] * 9]
    assert engine.generate_tokens(prompts, max_new_tokens=5) == reference.generate_tokens(prompts, max_new_tokens=5)


def test_distribution_statistics_for_min_k_plus_plus(tiny_path: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_path, tmp_path)
    context, continuation = [3, 4, 5, 6], [7, 8, 9]
    (result,) = engine.score_tokens([(context, continuation)], distribution=True)
    rows = torch.arange(len(context) - 1, len(context) + len(continuation) - 1)
    with torch.no_grad():
        logprobs = engine.model(torch.tensor([context + continuation]), logits_rows=rows).log_softmax(-1)[0].double()
    means = (logprobs.exp() * logprobs).sum(-1)
    stds = ((logprobs.exp() * (logprobs - means[:, None]).square()).sum(-1)).sqrt()
    assert torch.allclose(torch.tensor(result.token_means, dtype=torch.double), means, atol=1e-4)
    assert torch.allclose(torch.tensor(result.token_stds, dtype=torch.double), stds, atol=1e-4)
    assert engine.score_tokens([(context, continuation)])[0].token_means == ()


def test_row_scores_match_a_plain_log_softmax() -> None:
    logits = torch.randn(37, 1000, generator=torch.Generator().manual_seed(0)) * 8
    targets = torch.randint(0, 1000, (37,), generator=torch.Generator().manual_seed(1))
    targets[:5] = logits[:5].argmax(-1)
    logprobs = logits.log_softmax(-1).double()
    rows = row_scores(logits.clone(), targets, distribution=True)
    assert torch.allclose(rows[:, 0].double(), logprobs.gather(-1, targets[:, None])[:, 0], atol=1e-5)
    assert rows[:5, 1].all() and score_result(rows[:5]).is_greedy and not score_result(rows).is_greedy
    means = (logprobs.exp() * logprobs).sum(-1)
    assert torch.allclose(rows[:, 2].double(), means, atol=1e-4)
    result = score_result(rows, distribution=True)
    assert result.token_means == tuple(rows[:, 2].tolist()) and score_result(rows).token_means == ()
