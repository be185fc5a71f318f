"""requantize: complete GGUF files at another precision, readable by gguf-py, values as gguf-py quantizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, LlamaFileType, quants

from phfe.inference import GGUFError, inspect_gguf, tensor_loading_context
from phfe.inference.quantize import UnsupportedQuantizationError
from phfe.inference.requantize import FILE_TYPES, requantize, target_type
from tests.gguf_factory import T

TARGETS = list(FILE_TYPES)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # gguf-py on random data


def assert_requantized(src: Path, dst: Path, ggml_type: T, names: list[str] | None = None) -> None:
    before, after = inspect_gguf(src), inspect_gguf(dst)
    for key, value in before["metadata"].items():
        if key != "general.file_type":
            got = after["metadata"][key]
            assert np.array_equal(got, value) if isinstance(value, np.ndarray) else got == value, key
    assert after["metadata"]["general.file_type"] == FILE_TYPES[ggml_type]
    assert [(t["name"], t["shape"]) for t in after["tensors"]] == [(t["name"], t["shape"]) for t in before["tensors"]]

    reader = GGUFReader(dst)  # gguf-py reads the file back
    with tensor_loading_context(src) as source, tensor_loading_context(dst) as converted:
        for tensor in reader.tensors:
            if names is not None and tensor.name not in names:
                continue
            info = source.info(tensor.name)
            expected_type = target_type(info, ggml_type)
            assert tensor.tensor_type == expected_type, tensor.name
            if info.type == expected_type:
                assert np.array_equal(tensor.data.reshape(-1).view(np.uint8), source.read_raw(tensor.name).numpy())
                continue
            values = source.read_tensor(tensor.name).numpy()
            expected = quants.dequantize(quants.quantize(values, expected_type), expected_type)
            ours = converted.read_tensor(tensor.name).numpy()
            assert np.array_equal(ours.view(np.uint32), expected.reshape(ours.shape).view(np.uint32)), tensor.name


@pytest.mark.parametrize("ggml_type", TARGETS, ids=lambda t: t.name)
def test_requantize_every_target_type(all_types_gguf: Path, tmp_path: Path, ggml_type: T) -> None:
    dst = requantize(all_types_gguf, tmp_path / "out.gguf", ggml_type, progress=False)
    assert dst == tmp_path / "out.gguf"
    assert_requantized(all_types_gguf, dst, ggml_type)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]  # no temporary files left


def test_rule_for_vectors_and_ragged_rows(all_types_gguf: Path, tmp_path: Path) -> None:
    dst = requantize(all_types_gguf, tmp_path / "q4_0.gguf", "q4_0", progress=False)
    types = {t["name"]: t["type"] for t in inspect_gguf(dst)["tensors"]}
    assert types["f32.vector"] == "F32"  # 1-D: F32
    assert types["q4_k.256"] == "F32"
    assert types["f16.matrix"] == "F16"  # rows of 5 hold no whole Q4_0 block
    assert types["q6_k.3x512"] == types["q8_0.2x3x96"] == "Q4_0"


def test_type_names_and_errors(all_types_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedQuantizationError, match="Q4_K"):
        requantize(all_types_gguf, tmp_path / "x.gguf", T.Q4_K)
    with pytest.raises(UnsupportedQuantizationError, match="q9_9"):
        requantize(all_types_gguf, tmp_path / "x.gguf", "q9_9")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(all_types_gguf.read_bytes()[:1000])
    with pytest.raises(GGUFError, match="broken.gguf"):
        requantize(broken, tmp_path / "x.gguf", "q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]


@pytest.mark.real_model
def test_requantize_a_real_model(smollm2_path: Path, tmp_path: Path) -> None:
    dst = requantize(smollm2_path, tmp_path / "smollm2.q8_0.gguf", "Q8_0", progress=False)
    sample = ["token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"]
    assert_requantized(smollm2_path, dst, T.Q8_0, names=sample)
    assert inspect_gguf(dst)["metadata"]["general.file_type"] == LlamaFileType.MOSTLY_Q8_0
