"""The tokenizer a GGUF file embeds, rebuilt with HF ``tokenizers`` so that it gives llama.cpp's token ids.

Two vocabularies, named by ``tokenizer.ggml.model`` (llama.cpp ``src/llama-vocab.cpp``):

* ``gpt2``: byte-level BPE over the stored merges, after the sequence of split regexes that llama.cpp's
  ``llm_tokenizer_bpe`` picks for ``tokenizer.ggml.pre``.
* ``llama``: SentencePiece-style BPE (``llm_tokenizer_spm``). Spaces become U+2581 (after a leading space when
  ``add_space_prefix``), then the adjacent pair whose concatenation is the highest-scoring token merges first,
  ties to the leftmost, over the whole text; what stays outside the vocabulary becomes ``<0xXX>`` byte tokens.
  The file stores no merges; :func:`spm_merges` derives the ones that make BPE take the same steps.

Control, unknown and user-defined tokens are added tokens, matched in the raw text before anything else (as
llama.cpp does with ``parse_special=true``). A built tokenizer is cached as ``tokenizer.json`` under
``<cache>/tokenizers/``, keyed by a hash of the ``tokenizer.*`` metadata, which is all that determines it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from phfe.inference.gguf_file import read_header
from phfe.inference.sources import default_cache_dir

UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4  # tokenizer.ggml.token_type values
CACHE_FORMAT = "phfe-tokenizer-1"  # part of the cache key: change it when the build changes

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# The regexes llama.cpp applies in turn for each `tokenizer.ggml.pre` (every piece, matched or not, is kept).
PRE_TOKENIZER_SPLITS: dict[str, tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"),
    "gpt-2": (_GPT2,),
    "smollm": (r"\p{N}", _GPT2),
    "starcoder": (r"\p{N}", _GPT2),
    "refact": (r"\p{N}", _GPT2),
    "llama-bpe": (_LLAMA3,),
    "llama3": (_LLAMA3,),
    "llama-v3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "deepseek-r1-qwen": (_QWEN2,),
}
_LLAMA3_FAMILY = {"llama-bpe", "llama3", "llama-v3"}  # llama.cpp: ignore_merges and add_bos on by default
_DEFAULT_IDS = {"gpt2": {}, "llama": {"bos": 1, "eos": 2, "unknown": 0}}  # llama.cpp's when a key is missing
SUPPORTED_MODELS = tuple(_DEFAULT_IDS)


class UnsupportedTokenizerError(ValueError):
    """The file's ``tokenizer.ggml.model`` or ``tokenizer.ggml.pre`` is not one PHFE can build."""


class GGUFTokenizer:
    """A GGUF file's tokenizer. ``backend`` (a ``tokenizers.Tokenizer``) gives the ids of the text alone;
    :meth:`encode` adds BOS/EOS as the file's ``add_bos_token``/``add_eos_token`` say (llama.cpp's defaults
    when absent: BOS for ``llama`` vocabularies and llama3's ``llama-bpe``). ``special_ids`` are the control
    (and unknown) tokens, the ones ``decode(..., skip_special_tokens=True)`` leaves out."""

    def __init__(self, backend: Tokenizer, metadata: Mapping[str, Any]):
        model = metadata["tokenizer.ggml.model"]
        self.backend = backend
        self.vocab_size: int = len(metadata["tokenizer.ggml.tokens"])
        self.bos_token_id = _special_id(metadata, model, "bos")
        self.eos_token_id = _special_id(metadata, model, "eos")
        self.unk_token_id = _special_id(metadata, model, "unknown")
        self.pad_token_id = _special_id(metadata, model, "padding")
        default_bos = model == "llama" or _pre(metadata) in _LLAMA3_FAMILY
        self.add_bos: bool = bool(metadata.get("tokenizer.ggml.add_bos_token", default_bos))
        self.add_eos: bool = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
        if self.add_bos and self.bos_token_id is None:
            raise UnsupportedTokenizerError("add_bos_token is true but tokenizer.ggml.bos_token_id is not set")
        if self.add_eos and self.eos_token_id is None:
            raise UnsupportedTokenizerError("add_eos_token is true but tokenizer.ggml.eos_token_id is not set")
        types = np.asarray(metadata.get("tokenizer.ggml.token_type", ()))
        self.special_ids: frozenset[int] = frozenset(np.flatnonzero((types == CONTROL) | (types == UNKNOWN)).tolist())
        self.chat_template: str | None = metadata.get("tokenizer.chat_template")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; special tokens written in it become their single id."""
        return self._wrap(self.backend.encode(text, add_special_tokens=False).ids, add_special_tokens)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        """:meth:`encode` for many texts at once (in parallel, in Rust)."""
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [self._wrap(e.ids, add_special_tokens) for e in encodings]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; with ``skip_special_tokens``, control tokens are left out."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token as the file spells it (``"Ġthe"``, ``"▁the"``), None if there is none."""
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token of an id as the file spells it, None outside the vocabulary."""
        return self.backend.id_to_token(token_id)

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render ``messages`` with the file's ``tokenizer.chat_template`` (or ``chat_template``) as transformers
        does; ``tokenize=True`` gives the rendered text's ids, with no BOS/EOS added (the template writes them)."""
        template = chat_template or self.chat_template
        if template is None:
            raise ValueError("this GGUF file has no tokenizer.chat_template; pass chat_template=")
        variables = {
            f"{name}_token": self.id_to_token(token_id)
            for name, token_id in (
                ("bos", self.bos_token_id),
                ("eos", self.eos_token_id),
                ("unk", self.unk_token_id),
                ("pad", self.pad_token_id),
            )
            if token_id is not None
        }
        text = _compile_template(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **{**variables, **kwargs}
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def _wrap(self, ids: list[int], add_special_tokens: bool) -> list[int]:
        if not add_special_tokens:
            return ids
        return [self.bos_token_id] * self.add_bos + ids + [self.eos_token_id] * self.add_eos


def load_tokenizer(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> GGUFTokenizer:
    """The tokenizer of the GGUF file at ``path``, built once and then read from the cache
    (``cache_dir``, default ``$PHFE_CACHE`` or ``~/.cache/phfe``)."""
    metadata = {k: v for k, v in read_header(path).metadata.items() if k.startswith("tokenizer.")}
    _check_supported(metadata, f"{path}: ")
    cached = Path(cache_dir or default_cache_dir()) / "tokenizers" / f"{metadata_key(metadata)}.json"
    if cached.exists():
        backend = Tokenizer.from_file(str(cached))
    else:
        backend = build_backend(metadata)
        _save(backend, cached)
    return GGUFTokenizer(backend, metadata)


def metadata_key(metadata: Mapping[str, Any]) -> str:
    """A hash of the ``tokenizer.*`` metadata (and of :data:`CACHE_FORMAT`)."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for key in sorted(k for k in metadata if k.startswith("tokenizer.")):
        value = metadata[key]
        digest.update(json.dumps(key).encode())
        if isinstance(value, np.ndarray):
            digest.update(value.dtype.str.encode() + value.tobytes())
        else:
            digest.update(json.dumps(value).encode())
    return digest.hexdigest()[:32]


def build_backend(metadata: Mapping[str, Any]) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` for a file's ``tokenizer.*`` metadata (no BOS/EOS post-processing)."""
    _check_supported(metadata)
    if metadata["tokenizer.ggml.model"] == "gpt2":
        tokenizer = _byte_level_bpe(metadata)
    else:
        tokenizer = _sentencepiece_bpe(metadata)
    _add_special_tokens(tokenizer, metadata)
    return tokenizer


def _check_supported(metadata: Mapping[str, Any], where: str = "") -> None:
    """UnsupportedTokenizerError naming the file's model or pre-tokenizer, and the supported ones."""
    model = metadata.get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        supported = ", ".join(SUPPORTED_MODELS)
        raise UnsupportedTokenizerError(
            f"{where}tokenizer.ggml.model {model!r} is not supported; supported: {supported}"
        )
    pre = _pre(metadata)
    if model == "gpt2" and pre not in PRE_TOKENIZER_SPLITS:
        supported = ", ".join(sorted(PRE_TOKENIZER_SPLITS))
        raise UnsupportedTokenizerError(f"{where}tokenizer.ggml.pre {pre!r} is not supported; supported: {supported}")


def _pre(metadata: Mapping[str, Any]) -> str:
    return metadata.get("tokenizer.ggml.pre", "default")  # llama.cpp's choice when the key is missing


def _byte_level_bpe(metadata: Mapping[str, Any]) -> Tokenizer:
    pre = _pre(metadata)
    vocab = _vocab(metadata["tokenizer.ggml.tokens"])
    merges = []
    for merge in metadata.get("tokenizer.ggml.merges", ()):
        cut = merge.find(" ", 1)  # as llama.cpp reads them
        left, right = merge[:cut], merge[cut + 1 :]
        if cut > 0 and left in vocab and right in vocab and left + right in vocab:
            merges.append((left, right))
    tokenizer = Tokenizer(BPE(vocab, merges, ignore_merges=pre in _LLAMA3_FAMILY))
    splits = [pre_tokenizers.Split(Regex(regex), behavior="isolated") for regex in PRE_TOKENIZER_SPLITS[pre]]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece_bpe(metadata: Mapping[str, Any]) -> Tokenizer:
    tokens = metadata["tokenizer.ggml.tokens"]
    vocab = _vocab(tokens)
    scores = metadata.get("tokenizer.ggml.scores", np.zeros(len(tokens)))
    unk_id = _special_id(metadata, "llama", "unknown")
    unk = tokens[unk_id] if unk_id is not None else None
    tokenizer = Tokenizer(BPE(vocab, spm_merges(tokens, scores), unk_token=unk, byte_fallback=True))
    escape = [normalizers.Replace(" ", "\u2581")]
    strip: list[decoders.Decoder] = []
    if metadata.get("tokenizer.ggml.add_space_prefix", True):  # llama.cpp: a space before each text fragment
        escape.insert(0, normalizers.Prepend(" "))
        strip.append(decoders.Strip(" ", 1, 0))  # and detokenizing drops the first one
    tokenizer.normalizer = normalizers.Sequence(escape)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), *strip]
    )
    return tokenizer


def spm_merges(tokens: Sequence[str], scores: Sequence[float] | np.ndarray) -> list[tuple[str, str]]:
    """BPE merges under which ``tokenizers`` takes the steps of llama.cpp's SPM loop: one per token, ranked by
    the token's score, highest first (equal scores: lower id first).

    llama.cpp merges any two adjacent symbols whose concatenation is a token. When a token forms somewhere, no
    merge has crossed the edges of its span yet, and the merges inside the span ran in the order they run on the
    token's own text; so the token always forms from the same two pieces: the ones that loop leaves on its text.
    They are found here by running the loop on every token at once (rows of symbol ids, one step per merge).
    A character that is not itself a token falls back to bytes before merging (llama.cpp could still merge it;
    gemma3's vocabulary has every character of every token).
    """
    scores = np.asarray(scores, dtype=np.float64)
    vocab = {token: i for i, token in enumerate(tokens)}
    get, n = vocab.get, len(tokens)
    splits = [
        (left * n + right, token_id)
        for token_id, token in enumerate(tokens)
        for cut in range(1, len(token))
        if (left := get(token[:cut])) is not None and (right := get(token[cut:])) is not None
    ]
    if not splits:
        return []
    pair_keys, merged = np.array(splits, dtype=np.int64).T
    order = np.argsort(pair_keys)
    pair_keys, merged = pair_keys[order], merged[order]
    chars = _CharIds(tokens)
    found = []
    candidates = np.unique(merged)
    lengths = np.array([len(tokens[i]) for i in candidates.tolist()])
    for length in np.unique(lengths).tolist():
        ids = candidates[lengths == length]
        symbols = chars("".join(tokens[i] for i in ids.tolist())).reshape(len(ids), length)
        while symbols.shape[1] > 2:  # every row merges once per step, so rows keep one width
            symbols, kept = _merge_best_pair(symbols, pair_keys, merged, scores, n)
            ids = ids[kept]
        whole = (symbols >= 0).all(axis=1)
        found.append(np.column_stack([ids, symbols])[whole])
    left_right = np.concatenate(found)
    left_right = left_right[np.lexsort((left_right[:, 0], -scores[left_right[:, 0]]))]
    return [(tokens[a], tokens[b]) for a, b in left_right[:, 1:].tolist()]


class _CharIds:
    """Maps text to the ids of its characters' single-character tokens (-1 where there is none), vectorized."""

    def __init__(self, tokens: Sequence[str]):
        singles = sorted((ord(token), i) for i, token in enumerate(tokens) if len(token) == 1)
        table = np.array([*singles, (np.iinfo(np.int64).max, -1)], dtype=np.int64)  # a sentinel ends the table
        self.codes, self.ids = table[:, 0], table[:, 1]

    def __call__(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        at = np.searchsorted(self.codes, codes)
        return np.where(self.codes[at] == codes, self.ids[at], -1)


def _merge_best_pair(
    symbols: np.ndarray, pair_keys: np.ndarray, merged: np.ndarray, scores: np.ndarray, n_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """One step of llama.cpp's SPM loop on each row of symbol ids: merge the adjacent pair that makes the
    highest-scoring token (leftmost on ties). Rows with no pair to merge are dropped; ``kept`` marks the rest."""
    keys = symbols[:, :-1] * n_tokens + symbols[:, 1:]
    at = np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)
    hit = (pair_keys[at] == keys) & (symbols[:, :-1] >= 0) & (symbols[:, 1:] >= 0)
    best = np.where(hit, scores[merged[at]], -np.inf).argmax(axis=1)
    rows = np.arange(len(symbols))
    cols = np.arange(symbols.shape[1] - 1)
    out = np.take_along_axis(symbols, cols + (cols > best[:, None]), axis=1)
    out[rows, best] = merged[at[rows, best]]
    kept = hit[rows, best]
    return out[kept], kept


def _add_special_tokens(tokenizer: Tokenizer, metadata: Mapping[str, Any]) -> None:
    """Control/unknown tokens as special added tokens, user-defined ones as plain added tokens: all matched
    whole in the raw text, before normalization."""
    tokens = metadata["tokenizer.ggml.tokens"]
    types = np.asarray(metadata.get("tokenizer.ggml.token_type", ()))
    special = np.flatnonzero((types == CONTROL) | (types == UNKNOWN))
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in special])
    user = np.flatnonzero(types == USER_DEFINED)
    tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in user])


def _vocab(tokens: Sequence[str]) -> dict[str, int]:
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UnsupportedTokenizerError("duplicate tokens in tokenizer.ggml.tokens")
    return vocab


def _special_id(metadata: Mapping[str, Any], model: str, name: str) -> int | None:
    token_id = metadata.get(f"tokenizer.ggml.{name}_token_id", _DEFAULT_IDS[model].get(name))
    return token_id if token_id is not None and 0 <= token_id < len(metadata["tokenizer.ggml.tokens"]) else None


def _save(tokenizer: Tokenizer, path: Path) -> None:
    """Write ``tokenizer.json`` atomically, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tokenizer.save(str(tmp), pretty=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=16)
def _compile_template(template: str) -> Any:
    """A chat template compiled the way transformers compiles it (sandboxed, trim/lstrip blocks)."""
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
