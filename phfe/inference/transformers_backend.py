"""The scoring interface over Hugging Face transformers loading the same GGUF file: an independent engine.

transformers dequantizes the file itself and runs its own model code, with no paging or prefix caching;
batches are right-padded and sorted by length. Tokenization is PHFE's (the file's own tokenizer), so both
engines score the same tokens and any run can be cross-checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from phfe.inference.backend import ScoreResult, ScoringBackend, row_scores, score_result
from phfe.inference.sources import resolve_source
from phfe.models.tokenizer import GGUFTokenizer, load_tokenizer


class TransformersEngine(ScoringBackend):
    """``score``/``generate`` with a transformers model; slow, exact dequantized math."""

    def __init__(self, model: torch.nn.Module, tokenizer: GGUFTokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @classmethod
    def from_gguf(
        cls,
        source: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
    ) -> TransformersEngine:
        from transformers import AutoModelForCausalLM

        path = resolve_source(os.fspath(source))
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype).to(device)
        return cls(model, load_tokenizer(path), batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def score_tokens(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: bool = False,
        distribution: bool = False,
    ) -> list[ScoreResult]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]) - len(requests[i][1]))
        results: list[ScoreResult | None] = [None] * len(requests)
        for start in tqdm(range(0, len(order), self.batch_size), desc="scoring", disable=not progress):
            batch = order[start : start + self.batch_size]
            sequences = [list(requests[i][0]) + list(requests[i][1]) for i in batch]
            tokens = torch.zeros(len(batch), max(map(len, sequences)), dtype=torch.long)
            mask = torch.zeros_like(tokens)
            for row, sequence in enumerate(sequences):
                tokens[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
            with torch.inference_mode():
                logits = self.model(tokens.to(self.device), attention_mask=mask.to(self.device)).logits
            for row, i in enumerate(batch):
                n_context, continuation = len(requests[i][0]), torch.tensor(list(requests[i][1]), device=self.device)
                rows = logits[row, n_context - 1 : n_context - 1 + len(continuation)]
                results[i] = score_result(row_scores(rows, continuation, distribution).cpu(), distribution)
        return results  # type: ignore[return-value]

    def generate_tokens(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 32, stop: Sequence[str] = ()
    ) -> list[list[int]]:
        outputs = []
        eos = self.tokenizer.eos_token_id
        for prompt in prompts:
            tokens, generated = list(prompt), []
            while not self._finished(generated, max_new_tokens, stop):
                with torch.inference_mode():
                    logits = self.model(torch.tensor([tokens], device=self.device)).logits
                token = int(logits[0, -1].argmax())
                if token == eos:
                    break
                tokens.append(token)
                generated.append(token)
            outputs.append(generated)
        return outputs
