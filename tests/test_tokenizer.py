"""GGUF tokenizers: tiny vocabularies written with GGUFWriter and checked by hand, and the two real models
against transformers' GGUF tokenizer and against llama.cpp's SPM loop transcribed to Python."""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFWriter
from jinja2 import TemplateError

from phfe.inference import read_header
from phfe.models import GGUFTokenizer, UnsupportedTokenizerError, load_tokenizer
from phfe.models.tokenizer import metadata_key, spm_merges
from tests.gguf_factory import byte_chars

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, Neil Armstrong walked on the Moon; it was July 20.",
    "1234567890",
    "3.14159",
    "2026-12-04",
    "Pi is 3.14159265358979 and e is 2.718281828.",
    "+1 (555) 010-9999, 1,000,000.00$",
    "a  b   c    d",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\tand\t\ttabs",
    "\n\n\n",
    "line one\nline two\r\nline three\n",
    "  \n  mixed \t whitespace \n\n  ",
    " ",
    "",
    "café, naïve, über, Straße, señor, jalapeño, Ångström",
    "Tiếng Việt có dấu: Xin chào, tôi là người Việt Nam.",
    "中文文本：你好，世界！",
    "日本語のテキスト、ひらがなとカタカナ。",
    "한국어 텍스트입니다.",
    "Emoji: 🙂👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 ❤️",
    "def f(x):\n    if x > 0:\n        return x ** 2\n    return -x\n",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@\w+\.(com|org)$",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos<eos>",
    "I'm sure you'll see they've done it, didn't they? I'D SAY 'TIS",
    "Ωμέγα русский текст עברית العربية हिन्दी ไทย",
    "x" * 50 + " " + "=" * 40 + " " + "ab" * 30,
    "\u00a0nbsp\u2009thin\u3000ideographic",
]

CONVERSATION = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "  And 3+3?\n"},
]

# A Gemma-style template (gemma3's GGUF carries none): roles, `bos_token`, a filter, block trimming, an error.
GEMMA_TEMPLATE = """{{ bos_token }}{% for message in messages %}
    {% if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}
    {% set role = 'model' if message['role'] == 'assistant' else message['role'] %}
<start_of_turn>{{ role }}
{{ message['content'] | trim }}<end_of_turn>
{% endfor %}
{% if add_generation_prompt %}
<start_of_turn>model
{% endif %}"""


# --- tiny files ------------------------------------------------------------------------------------------------


def write_tokenizer_gguf(
    path: Path,
    model: str,
    tokens: Sequence[str],
    types: Sequence[int],
    merges: Sequence[str] = (),
    scores: Sequence[float] = (),
    pre: str | None = None,
    name: str = "tiny",
    **flags: bool | int,
) -> Path:
    """A GGUF file holding only a tokenizer; ``flags`` are e.g. ``bos_token_id=1, add_bos_token=True``."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if merges:
        writer.add_token_merges(merges)
    if scores:
        writer.add_token_scores(scores)
    for key, value in flags.items():
        getattr(writer, f"add_{key}")(value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


# Byte-level BPE: ids 0-255 are the bytes themselves, then merged tokens and special tokens.
BPE_EXTRA = ["he", "ll", "hell", "hello", "Ġw", "12", "34", "ĠĠ", "<|endoftext|>", "<|im_start|>", "<tool>"]
BPE_MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "1 2", "3 4", "Ġ Ġ"]
LL, HELLO, GW, ONE_TWO, THREE_FOUR, TWO_SPACES, ENDOFTEXT, IM_START, TOOL = 257, 259, 260, 261, 262, 263, 264, 265, 266


def write_bpe(path: Path, pre: str = "gpt-2", **flags: bool | int) -> Path:
    types = [NORMAL] * (256 + len(BPE_EXTRA) - 3) + [CONTROL, CONTROL, USER_DEFINED]
    tokens = byte_chars() + BPE_EXTRA
    return write_tokenizer_gguf(path, "gpt2", tokens, types, merges=BPE_MERGES, pre=pre, **flags)


# SentencePiece-style: <unk>, <s>, </s>, 256 byte tokens, then scored pieces (the score decides merge order).
SPM_PIECES = {"▁": -10.0, "a": -10.0, "b": -10.0, "c": -10.0, "ab": -1.0, "bc": -2.0, "aa": -3.0, "▁a": -4.0}
S, SLASH_S, A, C, AB, BC, AA, SPACE_A = 1, 2, 260, 262, 263, 264, 265, 266


def write_spm(path: Path, **flags: bool | int) -> Path:
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *SPM_PIECES]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(SPM_PIECES)
    scores = [0.0] * 259 + list(SPM_PIECES.values())
    return write_tokenizer_gguf(path, "llama", tokens, types, scores=scores, **flags)


def test_byte_level_bpe_merges_and_special_tokens(tmp_path: Path) -> None:
    tok = load_tokenizer(write_bpe(tmp_path / "bpe.gguf", bos_token_id=ENDOFTEXT), cache_dir=tmp_path)
    assert tok.encode("hello world") == [HELLO, GW, *b"orld"]  # gpt2: no BOS unless the file says so
    assert tok.encode("<|im_start|>hello<|endoftext|>") == [IM_START, HELLO, ENDOFTEXT]
    assert tok.encode("<tool>hi") == [TOOL, *b"hi"]
    assert tok.encode("héllo") == [*b"h\xc3\xa9", LL, *b"o"]
    assert tok.special_ids == {ENDOFTEXT, IM_START}
    assert tok.decode([IM_START, HELLO, GW, *b"\xc3\xa9"]) == "<|im_start|>hello wé"
    assert tok.decode([IM_START, HELLO], skip_special_tokens=True) == "hello"
    assert (tok.id_to_token(GW), tok.token_to_id("hello"), tok.vocab_size) == ("Ġw", HELLO, 267)


def test_bos_and_eos_follow_the_file(tmp_path: Path) -> None:
    path = write_bpe(
        tmp_path / "bpe.gguf", bos_token_id=IM_START, eos_token_id=ENDOFTEXT, add_bos_token=True, add_eos_token=True
    )
    tok = load_tokenizer(path, cache_dir=tmp_path)
    assert tok.encode("hello") == [IM_START, HELLO, ENDOFTEXT]
    assert tok.encode("hello", add_special_tokens=False) == [HELLO]
    assert tok.encode_batch(["hello", ""]) == [[IM_START, HELLO, ENDOFTEXT], [IM_START, ENDOFTEXT]]
    with pytest.raises(UnsupportedTokenizerError, match="bos_token_id"):
        load_tokenizer(write_bpe(tmp_path / "no_bos.gguf", add_bos_token=True), cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("pre", "ids"),
    [
        ("gpt-2", [ONE_TWO, THREE_FOUR]),  # one piece: both merges apply
        ("default", [ONE_TWO, *b"34"]),  # llama.cpp's default ends with [0-9]{3}: "123" "4"
        ("llama-bpe", [ONE_TWO, *b"34"]),  # digits in groups of three
        ("qwen2", list(b"1234")),  # single digits
        ("smollm", list(b"1234")),  # \p{N} split off first
    ],
)
def test_pre_tokenizer_splits_digits_as_llama_cpp(tmp_path: Path, pre: str, ids: list[int]) -> None:
    tok = load_tokenizer(write_bpe(tmp_path / "bpe.gguf", pre=pre, bos_token_id=ENDOFTEXT), cache_dir=tmp_path)
    assert tok.encode("1234", add_special_tokens=False) == ids


def test_smollm_spaces_before_a_digit_stay_together(tmp_path: Path) -> None:
    # smollm cuts digits off first, so "  " ends its piece and \s+(?!\S) takes both spaces; gpt-2 leaves " 1".
    smollm = load_tokenizer(write_bpe(tmp_path / "smollm.gguf", pre="smollm"), cache_dir=tmp_path)
    gpt2 = load_tokenizer(write_bpe(tmp_path / "gpt2.gguf", pre="gpt-2"), cache_dir=tmp_path)
    assert smollm.encode("a  1") == [*b"a", TWO_SPACES, *b"1"]
    assert gpt2.encode("a  1") == list(b"a  1")


def test_sentencepiece_merges_by_score(tmp_path: Path) -> None:
    tok = load_tokenizer(write_spm(tmp_path / "spm.gguf", add_space_prefix=False), cache_dir=tmp_path)
    assert tok.encode("abc", add_special_tokens=False) == [AB, C]  # "ab" (-1) beats "bc" (-2)
    assert tok.encode("bca", add_special_tokens=False) == [BC, A]
    assert tok.encode("aaa", add_special_tokens=False) == [AA, A]  # equal scores: leftmost first
    assert tok.encode("a a", add_special_tokens=False) == [A, SPACE_A]
    assert tok.encode("é", add_special_tokens=False) == [3 + 0xC3, 3 + 0xA9]  # byte fallback
    assert tok.encode("a") == [S, A]  # llama vocabularies add BOS unless the file says otherwise
    assert tok.encode("</s>a<s>", add_special_tokens=False) == [SLASH_S, A, S]
    assert tok.decode(tok.encode("a ab é<s>")) == "<s>a ab é<s>"
    assert tok.decode([AB, S, C], skip_special_tokens=True) == "abc"


def test_sentencepiece_space_prefix_after_every_special_token(tmp_path: Path) -> None:
    tok = load_tokenizer(write_spm(tmp_path / "spm.gguf", add_space_prefix=True), cache_dir=tmp_path)
    assert tok.encode("a</s>a", add_special_tokens=False) == [SPACE_A, SLASH_S, SPACE_A]
    assert tok.encode("") == [S]
    assert tok.decode([SPACE_A, A]) == "aa"  # the prefix space is dropped again


@pytest.mark.parametrize(
    ("scores", "merges"),
    [
        ([-1.0, -2.0], [("a", "b"), ("b", "c"), ("ab", "c")]),  # "ab" forms first, so "abc" = "ab" + "c"
        ([-2.0, -1.0], [("b", "c"), ("a", "b"), ("a", "bc")]),
    ],
)
def test_spm_merges_keep_the_split_llama_cpp_reaches(scores: list[float], merges: list[tuple[str, str]]) -> None:
    tokens = ["a", "b", "c", "x", "ab", "bc", "abc", "xyz"]  # "xyz" cannot form: no "y", "z", "xy" or "yz"
    assert spm_merges(tokens, [0.0] * 4 + scores + [-3.0, 0.0]) == merges


def test_unsupported_tokenizers_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedTokenizerError, match=r"'mystery-pre'.*smollm"):
        load_tokenizer(write_bpe(tmp_path / "pre.gguf", pre="mystery-pre"), cache_dir=tmp_path)
    path = write_tokenizer_gguf(tmp_path / "bert.gguf", "bert", ["[PAD]", "a"], [CONTROL, NORMAL])
    with pytest.raises(UnsupportedTokenizerError, match=r"'bert'.*gpt2, llama"):
        load_tokenizer(path, cache_dir=tmp_path)


def test_cache_is_keyed_by_tokenizer_metadata_and_read_back(tmp_path: Path) -> None:
    first = write_bpe(tmp_path / "a.gguf", pre="gpt-2", name="model a")
    renamed = write_bpe(tmp_path / "b.gguf", pre="gpt-2", name="model b")
    qwen2 = write_bpe(tmp_path / "c.gguf", pre="qwen2")
    key = metadata_key(read_header(first).metadata)
    assert metadata_key(read_header(renamed).metadata) == key != metadata_key(read_header(qwen2).metadata)

    assert load_tokenizer(first, cache_dir=tmp_path).encode("1234") == [ONE_TWO, THREE_FOUR]
    cached = tmp_path / "tokenizers" / f"{key}.json"
    assert cached.is_file()
    # Put another tokenizer in the cached file: the next load must take it from there and not rebuild.
    load_tokenizer(qwen2, cache_dir=tmp_path).backend.save(str(cached))
    assert load_tokenizer(renamed, cache_dir=tmp_path).encode("1234") == list(b"1234")


# --- the real models ---------------------------------------------------------------------------------------------


def spm_reference(text: str, vocab: dict[str, int], scores: Sequence[float]) -> list[int]:
    """llama.cpp's ``llm_tokenizer_spm_session::tokenize`` (no space prefix, no special tokens), line by line."""
    symbols = list(text.replace(" ", "\u2581"))
    nxt = [*range(1, len(symbols)), -1][: len(symbols)]
    prev = list(range(-1, len(symbols) - 1))
    queue: list[tuple[float, int, int, int]] = []

    def try_add_bigram(left: int, right: int) -> None:
        if left != -1 and right != -1 and (token := vocab.get(symbols[left] + symbols[right])) is not None:
            heapq.heappush(queue, (-scores[token], left, right, len(symbols[left]) + len(symbols[right])))

    for i in range(1, len(symbols)):
        try_add_bigram(i - 1, i)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != size:
            continue
        symbols[left], symbols[right] = symbols[left] + symbols[right], ""
        nxt[left] = nxt[right]
        if nxt[right] != -1:
            prev[nxt[right]] = left
        try_add_bigram(prev[left], left)
        try_add_bigram(left, nxt[left])
    ids = []
    for piece in (s for s in symbols if s):
        ids += [vocab[piece]] if piece in vocab else [vocab[f"<0x{b:02X}>"] for b in piece.encode()]
    return ids


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer_cache")


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path, real_cache: Path) -> GGUFTokenizer:
    return load_tokenizer(smollm2_path, cache_dir=real_cache)


@pytest.fixture(scope="session")
def gemma3(gemma3_path: Path, real_cache: Path) -> GGUFTokenizer:
    return load_tokenizer(gemma3_path, cache_dir=real_cache)


def hf_gguf_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_path: Path) -> Any:
    return hf_gguf_tokenizer(smollm2_path)


@pytest.fixture(scope="session")
def hf_gemma3(gemma3_path: Path) -> Any:
    return hf_gguf_tokenizer(gemma3_path)  # transformers takes ~15 s to build this one


@pytest.fixture(params=["smollm2", "gemma3"])
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.real_model
@pytest.mark.parametrize("text", CORPUS)
def test_ids_match_transformers(request: pytest.FixtureRequest, model_name: str, text: str) -> None:
    ours: GGUFTokenizer = request.getfixturevalue(model_name)
    hf = request.getfixturevalue(f"hf_{model_name}")
    # The same BOS convention on both sides: gemma3's file asks for BOS, smollm2's says add_bos_token = false.
    assert ours.encode(text) == hf(text)["input_ids"]


@pytest.mark.real_model
def test_round_trip_and_batch(request: pytest.FixtureRequest, model_name: str) -> None:
    tok: GGUFTokenizer = request.getfixturevalue(model_name)
    for text, ids in zip(CORPUS, tok.encode_batch(CORPUS, add_special_tokens=False), strict=True):
        assert ids == tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert tok.decode(tok.encode(text)) == tok.decode([tok.bos_token_id] * tok.add_bos) + text


@pytest.mark.real_model
def test_special_tokens_in_text(smollm2: GGUFTokenizer, gemma3: GGUFTokenizer) -> None:
    assert smollm2.encode("<|im_start|>") == [1] and smollm2.encode("") == []
    assert gemma3.encode("<start_of_turn>") == [2, 105] and gemma3.encode("") == [2]
    assert gemma3.encode("a\n\n\nb", add_special_tokens=False) == [236746, 109, 236763]  # user-defined "\n\n\n"
    assert (smollm2.bos_token_id, smollm2.eos_token_id, smollm2.pad_token_id) == (1, 2, 2)
    assert (gemma3.bos_token_id, gemma3.eos_token_id, gemma3.pad_token_id, gemma3.vocab_size) == (2, 1, 0, 262144)
    assert {0, 1, 2, 105, 106} <= gemma3.special_ids and 107 not in gemma3.special_ids


@pytest.mark.real_model
def test_smollm2_cuts_digits_off_first_where_transformers_does_not(smollm2: GGUFTokenizer, hf_smollm2: Any) -> None:
    """llama.cpp's `smollm` pre-tokenizer splits \\p{N} before the GPT-2 regex; transformers' GGUF loader has no
    entry for `smollm` and uses the GPT-2 regex alone. They differ only where a run of whitespace meets a digit."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    hf = hf_smollm2
    digits_first = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    digits_first.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"\p{N}"), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    for text in ["a  1", "\n\n7", "x\t\t5 and 42"]:
        assert smollm2.encode(text) == digits_first.encode(text).ids != hf(text)["input_ids"]
    assert smollm2.encode("a  1") == [81, 256, 33]  # transformers: [81, 216, 216, 33]


@pytest.mark.real_model
def test_gemma3_follows_llama_cpp_spm_loop(gemma3: GGUFTokenizer, gemma3_path: Path, hf_gemma3: Any) -> None:
    metadata = read_header(gemma3_path).metadata
    tokens, scores = metadata["tokenizer.ggml.tokens"], metadata["tokenizer.ggml.scores"].tolist()
    vocab = {token: i for i, token in enumerate(tokens)}
    rng = random.Random(0)
    types = metadata["tokenizer.ggml.token_type"]
    pieces = [t.replace("\u2581", " ") for t, kind in zip(tokens, types, strict=True) if kind == NORMAL]
    texts = [t for t in CORPUS if not any(c in t for c in "\n\t<")]
    for _ in range(1000):  # runs of vocabulary pieces cut at random places, and random short strings
        joined = "".join(rng.choices(pieces, k=rng.randint(2, 12)))
        start = rng.randrange(len(joined))
        texts += [joined[start : rng.randint(start, len(joined))], "".join(rng.choices("aabcdeeinorst .,1中🙂é", k=30))]
    texts = [t for t in texts if not any(s in t for s in ("  ", "\n", "\t", "<"))]  # those are user-defined tokens
    for text in texts:
        assert gemma3.encode(text, add_special_tokens=False) == spm_reference(text, vocab, scores), text
    # A literal U+2581 reads as a space. llama.cpp matches the user-defined "   " token in the raw text, where
    # this has no run of spaces; transformers renames that token "▁▁▁" and so merges all three into it.
    ours = gemma3.encode("a ▁ b", add_special_tokens=False)
    assert ours == spm_reference("a ▁ b", vocab, scores) == [236746, 236743, 236743, 518]
    assert hf_gemma3("a ▁ b", add_special_tokens=False)["input_ids"] == [236746, 139, 236763]


@pytest.mark.real_model
def test_chat_templates_match_transformers(
    smollm2: GGUFTokenizer, gemma3: GGUFTokenizer, hf_smollm2: Any, hf_gemma3: Any
) -> None:
    hf = hf_smollm2
    for prompt in (False, True):
        text = hf.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=prompt)
        assert smollm2.apply_chat_template(CONVERSATION, add_generation_prompt=prompt) == text
        assert (
            smollm2.apply_chat_template(CONVERSATION, add_generation_prompt=prompt, tokenize=True)
            == hf(text, add_special_tokens=False)["input_ids"]
        )
    hf = hf_gemma3
    text = hf.apply_chat_template(
        CONVERSATION, chat_template=GEMMA_TEMPLATE, tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4")
    assert gemma3.apply_chat_template(CONVERSATION, add_generation_prompt=True, chat_template=GEMMA_TEMPLATE) == text
    ids = gemma3.apply_chat_template(
        CONVERSATION, add_generation_prompt=True, chat_template=GEMMA_TEMPLATE, tokenize=True
    )
    assert ids[:3] == [2, 105, 2364] and ids == hf(text, add_special_tokens=False)["input_ids"]
    with pytest.raises(TemplateError, match="bad role"):
        gemma3.apply_chat_template([{"role": "tool", "content": "x"}], chat_template=GEMMA_TEMPLATE)
    with pytest.raises(ValueError, match="no tokenizer.chat_template"):
        gemma3.apply_chat_template(CONVERSATION)


@pytest.mark.real_model
def test_real_tokenizers_load_from_cache(request: pytest.FixtureRequest, model_name: str, real_cache: Path) -> None:
    built: GGUFTokenizer = request.getfixturevalue(model_name)  # built into real_cache on first use
    path = request.getfixturevalue(f"{model_name}_path")
    assert (real_cache / "tokenizers" / f"{metadata_key(read_header(path).metadata)}.json").is_file()
    assert load_tokenizer(path, cache_dir=real_cache).encode_batch(CORPUS) == built.encode_batch(CORPUS)
