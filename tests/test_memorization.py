"""Memorization measures: Min-K% and Min-K%++ by hand, k-extractability and the report on a tiny real engine."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from phfe.eval.memorization import (
    k_extractable,
    k_extractable_batch,
    memorization_report,
    min_k_percent,
    min_k_percent_plus_plus,
    sequence_measures,
    shuffle_words,
    windows,
)
from phfe.inference.engine import Engine
from phfe.inference.kv_cache import KVCacheManager
from phfe.models import build_model, load_tokenizer
from tests.gguf_factory import TINY_MODELS, write_tiny_model

LOGPROBS = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0, -10.0]


@pytest.mark.parametrize(("k", "expected"), [(0.2, -9.5), (0.25, -9.5), (0.05, -10.0), (0.5, -8.0), (1.0, -5.5)])
def test_min_k_percent_is_the_mean_of_the_lowest_k_percent(k: float, expected: float) -> None:
    shuffled = random.Random(0).sample(LOGPROBS, len(LOGPROBS))
    assert min_k_percent(shuffled, k) == pytest.approx(expected)


def test_min_k_percent_plus_plus_standardizes_each_token() -> None:
    logprobs, means, stds = [-1.0, -2.0, -3.0, -4.0, -5.0], [-2.0] * 5, [1.0, 2.0, 0.5, 1.0, 4.0]
    # z-scores: 1, 0, -2, -2, -0.75
    assert min_k_percent_plus_plus(logprobs, means, stds, k=0.4) == pytest.approx(-2.0)
    assert min_k_percent_plus_plus(logprobs, means, stds, k=0.6) == pytest.approx((-2 - 2 - 0.75) / 3)
    assert min_k_percent_plus_plus(logprobs, means, stds, k=1.0) == pytest.approx((1 + 0 - 2 - 2 - 0.75) / 5)
    assert min_k_percent_plus_plus([-0.5], [-0.5], [0.0]) == 0.0  # a one-hot distribution's own token


def test_bad_arguments_are_rejected() -> None:
    for bad in ([], 0.0), ([-1.0], 0.0), ([-1.0], 1.5):
        with pytest.raises(ValueError):
            min_k_percent(*bad)
    with pytest.raises(ValueError, match="means"):
        min_k_percent_plus_plus([-1.0, -2.0], [-1.0], [1.0, 1.0])


def test_windows_and_shuffled_controls() -> None:
    assert windows(list(range(10)), 4, 3) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert windows([1, 2], 4, 1) == []
    text = "one two three\nfour  five six seven"
    shuffled = shuffle_words(text, seed=0)
    assert shuffled == shuffle_words(text, seed=0) != text
    assert sorted(shuffled.split()) == sorted(text.split())
    assert re.findall(r"\s+", shuffled) == re.findall(r"\s+", text)  # the layout is kept


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    tmp = tmp_path_factory.mktemp("memorization")
    path = write_tiny_model(Path(tmp) / "llama.gguf", TINY_MODELS["llama"])
    model = build_model(path)
    a = model.args
    cache = KVCacheManager(256, 4, a.n_layers, a.n_kv_heads, a.head_dim)
    return Engine(model, load_tokenizer(path, cache_dir=tmp), cache)


def own_and_random(engine: Engine, n: int = 3, length: int = 8) -> tuple[list[list[int]], list[list[int]]]:
    """Sequences that are a random prefix and the model's greedy continuation, and the same prefixes followed
    by random tokens (byte tokens: the tiny model's 256 bytes and one merge)."""
    rng = random.Random(0)
    prefixes = [[rng.randrange(3, 257) for _ in range(length)] for _ in range(2 * n)]
    greedy = engine.generate_tokens(prefixes, max_new_tokens=length)
    own = [p + g for p, g in zip(prefixes, greedy, strict=True) if len(g) == length][:n]  # no EOS in the window
    assert len(own) == n
    return own, [s[:length] + [rng.randrange(3, 257) for _ in range(length)] for s in own]


def test_the_models_own_greedy_output_is_k_extractable_and_random_text_is_not(engine: Engine) -> None:
    own, other = own_and_random(engine)
    assert k_extractable_batch(engine, own + other, 8, 8) == [True] * 3 + [False] * 3
    assert k_extractable(engine, own[0] + [5, 6], prefix_len=8, suffix_len=8)  # tokens past the suffix don't count
    assert not k_extractable(engine, own[0][:12] + [t % 250 + 3 for t in own[0][12:]], 8, 8)  # changed tokens
    assert k_extractable(engine, [9] + own[0], prefix_len=8, suffix_len=8, lead=[]) is False  # shifted window
    with pytest.raises(ValueError, match="fewer than"):
        k_extractable(engine, own[0], prefix_len=8, suffix_len=9)


def test_min_k_plus_plus_of_greedy_tokens_is_positive(engine: Engine) -> None:
    bos = engine.tokenizer.bos_token_id
    greedy = engine.generate_tokens([[bos]], max_new_tokens=20)[0]
    rng = random.Random(1)
    random_ids = [rng.randrange(3, 257) for _ in range(20)]
    own, other = engine.score_tokens([([bos], greedy), ([bos], random_ids)], distribution=True)
    assert own.is_greedy and not other.is_greedy
    assert min_k_percent_plus_plus(own.token_logprobs, own.token_means, own.token_stds) > 0
    assert min_k_percent_plus_plus(other.token_logprobs, other.token_means, other.token_stds) < 0


def test_sequence_measures_windows_and_extractability(engine: Engine) -> None:
    own, other = own_and_random(engine)
    rows = sequence_measures(engine, [own[0], other[0], own[0] * 3, [7, 8, 9]], prefix_len=8, suffix_len=8)
    assert [r["n_tokens"] for r in rows] == [16, 16, 48, 3]
    assert [r["windows"] for r in rows] == [1, 1, (48 - 16) // 8 + 1, 0]
    assert rows[0]["extractable"] == 1.0 and rows[1]["extractable"] == 0.0 and rows[3]["extractable"] is None
    for row in rows:
        assert row["min_k"] <= row["mean_logprob"] < 0
    with pytest.raises(ValueError, match="at least one token"):
        sequence_measures(engine, [[]])


def test_report_puts_each_text_beside_its_shuffled_control(engine: Engine) -> None:
    texts = {"zeta": "the cat sat on the mat and the dog sat on the log " * 4, "alpha": "one five nine eleven seven"}
    rows = memorization_report(engine, texts, prefix_len=8, suffix_len=8, max_tokens=40)
    assert [(r["text"], r["kind"]) for r in rows] == [
        ("alpha", "original"),
        ("alpha", "shuffled"),
        ("zeta", "original"),
        ("zeta", "shuffled"),
    ]
    tokens = len(engine.tokenizer.encode(texts["alpha"], add_special_tokens=False))
    assert rows[0]["n_tokens"] == rows[1]["n_tokens"] == tokens  # the same bytes, reordered (no " t" merge)
    assert rows[2]["n_tokens"] == 40 and rows[2]["windows"] == (40 - 16) // 8 + 1
    assert rows[2]["mean_logprob"] != rows[3]["mean_logprob"]
    assert memorization_report(engine, texts, prefix_len=8, suffix_len=8, max_tokens=40) == rows
