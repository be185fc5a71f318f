"""What every scoring backend offers: lm-evaluation-harness style scoring and greedy generation on text.

A backend implements :meth:`ScoringBackend.score_tokens` and :meth:`ScoringBackend.generate_tokens`; the
text-level methods, tokenized the same way for all backends, come from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from phfe.models.tokenizer import GGUFTokenizer


@dataclass(frozen=True)
class ScoreResult:
    """The log-likelihood of one continuation given its context."""

    logprob: float  # sum of the continuation tokens' log-probabilities
    token_logprobs: tuple[float, ...]
    is_greedy: bool  # every continuation token is the argmax given what precedes it
    # With ``distribution=True``: the mean and standard deviation of log p(z) under the model's own
    # next-token distribution at each continuation position (what Min-K%++ normalizes by).
    token_means: tuple[float, ...] = ()
    token_stds: tuple[float, ...] = ()

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)


class ScoringBackend:
    """Base of the engines: subclasses set ``tokenizer`` and implement the two ``*_tokens`` methods."""

    tokenizer: GGUFTokenizer

    def score_tokens(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: bool = False,
        distribution: bool = False,
    ) -> list[ScoreResult]:
        """Log-likelihood of each (context ids, continuation ids) pair's continuation (with ``distribution``,
        also the per-position mean and standard deviation of log-probabilities)."""
        raise NotImplementedError

    def generate_tokens(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, stop: Sequence[str] = ()
    ) -> list[list[int]]:
        """Greedy generation: the generated ids (without EOS) of each prompt, decoding stopped once their
        text holds a stop string."""
        raise NotImplementedError

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens as lm-evaluation-harness splits them: the context's trailing
        whitespace moves to the continuation, and the continuation is tokens(context + continuation) minus
        tokens(context); an empty context becomes the BOS (else EOS) token."""
        stripped = context.rstrip()
        context, continuation = stripped, context[len(stripped) :] + continuation
        if not context:
            prefix = self.tokenizer.bos_token_id
            prefix = self.tokenizer.eos_token_id if prefix is None else prefix
            return [prefix], self.tokenizer.encode(continuation, add_special_tokens=False)
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        return context_ids, whole[len(context_ids) :]

    def score(
        self, pairs: Sequence[tuple[str, str]], progress: bool = False, distribution: bool = False
    ) -> list[ScoreResult]:
        """Log-likelihood of each (context, continuation) pair's continuation."""
        requests = [self.encode_pair(c, x) for c, x in pairs]
        return self.score_tokens(requests, progress=progress, distribution=distribution)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, stop: Sequence[str] = ()) -> list[str]:
        """Greedy continuations of ``prompts``, ending at EOS, ``max_new_tokens`` or the first stop string
        (which is cut off, with everything after it)."""
        ids = [self.tokenizer.encode(p) for p in prompts]
        texts = [self.tokenizer.decode(t) for t in self.generate_tokens(ids, max_new_tokens, stop)]
        return [min((t.split(s, 1)[0] for s in stop), key=len, default=t) for t in texts]

    def _finished(self, generated: list[int], max_new_tokens: int, stop: Sequence[str]) -> bool:
        """Whether greedy decoding of a sequence ends after ``generated`` (EOS already left out by callers)."""
        if len(generated) >= max_new_tokens:
            return True
        return bool(stop) and any(s in self.tokenizer.decode(generated) for s in stop)


SCORE_CHUNK_ROWS = 256  # rows x vocabulary logits at a time (256 x 262,144 float32 = 268 MB for gemma 3)


@torch.inference_mode()
def row_scores(logits: torch.Tensor, targets: torch.Tensor, distribution: bool = False) -> torch.Tensor:
    """Per row of ``logits`` (rows, vocab; normalized in place when float32) and its target token: a (rows, 4)
    float tensor of the target's log-probability, 1.0 where the target is the argmax, and, with
    ``distribution``, the mean and standard deviation of log p under the row's distribution (else 0)."""
    logprobs = logits.float()
    logprobs -= logprobs.logsumexp(-1, keepdim=True)
    out = torch.zeros(len(targets), 4, device=logprobs.device)
    out[:, 0] = logprobs.gather(-1, targets[:, None])[:, 0]
    out[:, 1] = (logprobs.argmax(-1) == targets).float()
    if distribution:
        probs = logprobs.exp()
        out[:, 2] = (probs * logprobs).sum(-1)
        out[:, 3] = ((probs * logprobs.square()).sum(-1) - out[:, 2].square()).clamp_min(0).sqrt()
    return out


def score_result(rows: torch.Tensor, distribution: bool = False) -> ScoreResult:
    """The :class:`ScoreResult` of one continuation from its :func:`row_scores` rows."""
    token_lps = rows[:, 0].double()
    result = ScoreResult(float(token_lps.sum()), tuple(token_lps.tolist()), bool(rows[:, 1].all()))
    if not distribution:
        return result
    return dataclasses.replace(result, token_means=tuple(rows[:, 2].tolist()), token_stds=tuple(rows[:, 3].tolist()))
