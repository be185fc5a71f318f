"""GGUF I/O speed, PHFE vs gguf-py, side by side on the two real models (and on CUDA where present).

    python experiments/bench_gguf_io.py [--out experiments/results/bench_gguf_io.md]

Measures (median of repeated warm runs; the machine's noise shows in min..max):
- opening a file and reading its metadata and tensor table: ``inspect_gguf`` vs ``gguf.GGUFReader``;
- dequantizing every tensor to float32 (each result dropped before the next, same for both):
  ``tensor_loading_context().read_tensor`` vs ``gguf.quants.dequantize`` over ``GGUFReader`` data;
- the machine's float32 write bandwidth: filling a fresh tensor (page faults included, which is what a
  dequantizer writing new tensors pays) and re-filling a touched one;
- on CUDA: dequantization of every tensor on the device, against the device's fill bandwidth.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from gguf import GGUFReader, quants
from report import emit, header, script_parser

from phfe.inference import inspect_gguf, resolve_source, tensor_loading_context
from phfe.inference.dequant import dequantize

FILL_ELEMENTS = 1 << 26


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s ({min(times):.3f}..{max(times):.3f})"


def fill_bandwidth(device: str) -> tuple[float, float]:
    """Elements/s for filling a fresh float32 tensor, and for re-filling a touched one."""

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    def fresh() -> None:
        torch.empty(FILL_ELEMENTS, device=device).fill_(1.0)
        sync()

    touched = torch.empty(FILL_ELEMENTS, device=device)

    def refill() -> None:
        touched.fill_(1.0)
        sync()

    return (
        FILL_ELEMENTS / statistics.median(timed(fresh, 7)),
        FILL_ELEMENTS / statistics.median(timed(refill, 7)),
    )


def bench_model(name: str, path: Path, repeats: int) -> dict[str, object]:
    n_elements = sum(t["n_elements"] for t in inspect_gguf(path)["tensors"])
    phfe_open = timed(lambda: inspect_gguf(path), repeats)
    gguf_open = timed(lambda: GGUFReader(path), max(2, repeats // 2), warmup=0)

    reader = GGUFReader(path)

    def gguf_dequant_all() -> None:
        for tensor in reader.tensors:
            quants.dequantize(tensor.data, tensor.tensor_type)

    with tensor_loading_context(path) as loader:

        def phfe_dequant_all() -> None:
            for tensor_name in loader.tensors:
                loader.read_tensor(tensor_name)

        phfe_all = timed(phfe_dequant_all, repeats)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        phfe_one = timed(phfe_dequant_all, repeats)
        torch.set_num_threads(threads)
    gguf_all = timed(gguf_dequant_all, max(2, repeats // 2))
    return {
        "name": name,
        "n_elements": n_elements,
        "phfe_open": phfe_open,
        "gguf_open": gguf_open,
        "phfe_all": phfe_all,
        "phfe_one": phfe_one,
        "gguf_all": gguf_all,
    }


def bench_cuda(name: str, path: Path, repeats: int) -> dict[str, float]:
    """Device dequantization of every tensor, from bytes already on the device, and end to end."""
    with tensor_loading_context(path) as loader:
        resident = {n: (loader.read_raw(n).cuda(), i) for n, i in loader.tensors.items()}

        def on_device() -> None:
            for raw, info in resident.values():
                dequantize(raw, info.type, info.shape)
            torch.cuda.synchronize()

        def end_to_end() -> None:
            for tensor_name in loader.tensors:
                loader.read_tensor(tensor_name, device="cuda")
            torch.cuda.synchronize()

        n = sum(i.n_elements for _, i in resident.values())
        return {
            "name": name,
            "on_device": n / statistics.median(timed(on_device, repeats)),
            "end_to_end": n / statistics.median(timed(end_to_end, repeats)),
        }


def report(results: list[dict[str, object]], fills: tuple[float, float], cuda: list[dict], cuda_fill) -> list[str]:
    fresh, refill = fills
    lines = [
        *header("GGUF I/O: PHFE vs gguf-py", ("torch", "gguf")),
        f"- float32 fill: fresh tensor {fresh / 1e9:.2f} G el/s ({fresh * 4 / 1e9:.1f} GB/s, page faults "
        f"included), touched tensor {refill / 1e9:.2f} G el/s ({refill * 4 / 1e9:.1f} GB/s)",
        "",
        "Times are medians of warm runs (min..max). Dequantization: every tensor to float32, each result",
        "dropped before the next; `PHFE x1` is PHFE on one thread (gguf-py/numpy is single-threaded).",
        "",
        "| model | step | gguf-py | PHFE | speed-up | PHFE x1 | PHFE G el/s | of fresh fill |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r["n_elements"]
        open_ratio = statistics.median(r["gguf_open"]) / statistics.median(r["phfe_open"])
        lines.append(
            f"| {r['name']} | open + inspect | {spread(r['gguf_open'])} | {spread(r['phfe_open'])} | "
            f"{open_ratio:.0f}x | | | |"
        )
        phfe_rate = n / statistics.median(r["phfe_all"])
        lines.append(
            f"| {r['name']} | dequantize all ({n / 1e6:.0f}M el) | {spread(r['gguf_all'])} | "
            f"{spread(r['phfe_all'])} | "
            f"{statistics.median(r['gguf_all']) / statistics.median(r['phfe_all']):.1f}x | "
            f"{statistics.median(r['phfe_one']):.3f} s | {phfe_rate / 1e9:.2f} | {phfe_rate / fresh:.0%} |"
        )
    if cuda:
        fresh_gpu, refill_gpu = cuda_fill
        lines += [
            "",
            f"CUDA ({torch.cuda.get_device_name()}): fill fresh {fresh_gpu / 1e9:.1f} G el/s, "
            f"touched {refill_gpu / 1e9:.1f} G el/s ({refill_gpu * 4 / 1e9:.0f} GB/s)",
            "",
            "| model | dequantize on device (G el/s) | of fill | file -> GPU tensors, end to end (G el/s) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c['name']} | {c['on_device'] / 1e9:.1f} | {c['on_device'] / refill_gpu:.0%} | "
            f"{c['end_to_end'] / 1e9:.2f} |"
            for c in cuda
        ]
    return lines


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    paths = {name: resolve_source(name) for name in args.models}
    fills = fill_bandwidth("cpu")
    results = [bench_model(name, path, args.repeats) for name, path in paths.items()]
    cuda, cuda_fill = [], (0.0, 0.0)
    if torch.cuda.is_available():
        cuda_fill = fill_bandwidth("cuda")
        cuda = [bench_cuda(name, path, args.repeats) for name, path in paths.items()]
    emit(report(results, fills, cuda, cuda_fill), args.out)


if __name__ == "__main__":
    main()
