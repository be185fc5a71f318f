"""Measures of verbatim memorization of a text by a model, through any :class:`ScoringBackend`.

- Min-K% (Shi et al. 2024, "Detecting Pretraining Data from Large Language Models"): the mean log-probability
  of the k% least likely tokens of the text; seen text has few very unlikely tokens.
- Min-K%++ (Zhang et al. 2024): the same over each token's log-probability standardized by the mean and
  standard deviation of log p under the model's next-token distribution at that position.
- k-extractable (Carlini et al. 2021/2023): greedy decoding from a ``prefix_len``-token prefix reproduces the
  next ``suffix_len`` tokens exactly.

:func:`memorization_report` puts them side by side for each text and for a control that cannot have been
memorized: the same words in a shuffled order (same length and vocabulary, layout kept).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from phfe.inference.backend import ScoringBackend

EPSILON = 1e-12  # floor of the standard deviation in Min-K%++ (a one-hot distribution has none)


def _lowest_mean(values: Sequence[float], k: float) -> float:
    """The mean of the ``max(1, int(k * n))`` lowest values (the papers' ``int``, but never none)."""
    if not values:
        raise ValueError("no token values to take the lowest k% of")
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    lowest = sorted(values)[: max(1, int(k * len(values)))]
    return sum(lowest) / len(lowest)


def min_k_percent(token_logprobs: Sequence[float], k: float = 0.2) -> float:
    """Min-K%: the mean of the k% lowest token log-probabilities (higher: more likely seen in training)."""
    return _lowest_mean(token_logprobs, k)


def min_k_percent_plus_plus(
    token_logprobs: Sequence[float], means: Sequence[float], stds: Sequence[float], k: float = 0.2
) -> float:
    """Min-K%++: the mean of the k% lowest (log p - mu) / sigma, with mu and sigma the mean and standard
    deviation of log p(z) over the vocabulary under the model's distribution at each position."""
    if not len(token_logprobs) == len(means) == len(stds):
        raise ValueError(f"{len(token_logprobs)} log-probs, {len(means)} means and {len(stds)} stds")
    scores = [(lp - mu) / max(sigma, EPSILON) for lp, mu, sigma in zip(token_logprobs, means, stds, strict=True)]
    return _lowest_mean(scores, k)


def k_extractable_batch(
    backend: ScoringBackend,
    sequences: Sequence[Sequence[int]],
    prefix_len: int = 32,
    suffix_len: int = 32,
    lead: Sequence[int] = (),
) -> list[bool]:
    """For each token sequence, whether greedy decoding from ``lead`` plus its first ``prefix_len`` tokens
    generates its next ``suffix_len`` tokens exactly (``lead``: e.g. ``[BOS]`` for models that expect one),
    all generated in one batch."""
    for index, ids in enumerate(sequences):
        if len(ids) < prefix_len + suffix_len:
            raise ValueError(f"sequence {index} has {len(ids)} tokens, fewer than {prefix_len} + {suffix_len}")
    prompts = [[*lead, *ids[:prefix_len]] for ids in sequences]
    generated = backend.generate_tokens(prompts, max_new_tokens=suffix_len)
    return [
        out == list(ids[prefix_len : prefix_len + suffix_len]) for out, ids in zip(generated, sequences, strict=True)
    ]


def k_extractable(
    backend: ScoringBackend,
    token_ids: Sequence[int],
    prefix_len: int = 32,
    suffix_len: int = 32,
    lead: Sequence[int] = (),
) -> bool:
    """Whether greedy decoding from the first ``prefix_len`` tokens reproduces the next ``suffix_len``."""
    return k_extractable_batch(backend, [token_ids], prefix_len, suffix_len, lead)[0]


def windows(token_ids: Sequence[int], length: int, stride: int) -> list[Sequence[int]]:
    """The slices of ``length`` tokens starting every ``stride`` tokens (none if the text is shorter)."""
    return [token_ids[start : start + length] for start in range(0, len(token_ids) - length + 1, stride)]


def shuffle_words(text: str, seed: int = 0) -> str:
    """``text`` with its words (runs of non-space) in a random order, whitespace left where it was."""
    words = text.split()
    random.Random(seed).shuffle(words)
    shuffled: Iterator[str] = iter(words)
    return re.sub(r"\S+", lambda _: next(shuffled), text)


def sequence_measures(
    backend: ScoringBackend,
    sequences: Sequence[Sequence[int]],
    k: float = 0.2,
    prefix_len: int = 32,
    suffix_len: int = 32,
    stride: int | None = None,
) -> list[dict[str, Any]]:
    """The measures of each token sequence: ``n_tokens``, ``mean_logprob``, ``min_k`` and ``min_k_plus_plus``
    (Min-K% and Min-K%++ at ``k``), ``windows`` (how many ``prefix_len + suffix_len`` windows start every
    ``stride`` tokens, default ``suffix_len``) and ``extractable`` (the share of them that are k-extractable;
    None without windows). Sequences are scored after the BOS token (else EOS), as lm-evaluation-harness
    scores a text without context; windows are generated after BOS where the tokenizer adds one."""
    tokenizer = backend.tokenizer
    start = tokenizer.eos_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    if any(not ids for ids in sequences):
        raise ValueError("every sequence needs at least one token")
    scores = backend.score_tokens([([start], ids) for ids in sequences], distribution=True)
    lead = [tokenizer.bos_token_id] if tokenizer.add_bos and tokenizer.bos_token_id is not None else []
    slices = [windows(ids, prefix_len + suffix_len, stride or suffix_len) for ids in sequences]
    flat = k_extractable_batch(backend, [w for ws in slices for w in ws], prefix_len, suffix_len, lead)
    rows, offset = [], 0
    for score, ws in zip(scores, slices, strict=True):
        hits = flat[offset : offset + len(ws)]
        offset += len(ws)
        rows.append(
            {
                "n_tokens": score.n_tokens,
                "mean_logprob": score.logprob / score.n_tokens,
                "min_k": min_k_percent(score.token_logprobs, k),
                "min_k_plus_plus": min_k_percent_plus_plus(
                    score.token_logprobs, score.token_means, score.token_stds, k
                ),
                "windows": len(ws),
                "extractable": sum(hits) / len(hits) if hits else None,
            }
        )
    return rows


def memorization_report(
    backend: ScoringBackend,
    texts: Mapping[str, str],
    k: float = 0.2,
    prefix_len: int = 32,
    suffix_len: int = 32,
    stride: int | None = None,
    max_tokens: int = 512,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """:func:`sequence_measures` of each text (its first ``max_tokens`` tokens) and of its control, the same
    words shuffled with ``seed``: rows sorted by ``text``, each ``kind`` "original" then "shuffled"."""
    variants = [
        (name, kind, text)
        for name in sorted(texts)
        for kind, text in (("original", texts[name]), ("shuffled", shuffle_words(texts[name], seed)))
    ]
    sequences = [backend.tokenizer.encode(text, add_special_tokens=False)[:max_tokens] for _, _, text in variants]
    measures = sequence_measures(backend, sequences, k, prefix_len, suffix_len, stride)
    return [{"text": name, "kind": kind, **m} for (name, kind, _), m in zip(variants, measures, strict=True)]
