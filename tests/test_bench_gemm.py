"""plugins.bench.gemm and plugins.bench.gemm_report (scripts/bench/): the pure parts on CPU (traffic
and FLOP arithmetic, floors, targets and verdicts, JSON schema, markdown, argument parsing); the
measurement itself only where a CUDA GPU is present."""
from __future__ import annotations

import json
import math

import pytest
import torch

from export.errors import ReportError
from plugins.bench import gemm as bench_gemm
from plugins.bench import gemm_report as rep
from plugins.bench.record import report_json

HAVE_CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------- arithmetic
def test_nvfp4_bytes_is_weights_at_0_5625_plus_bf16_activations():
    M, N, K = 3, 14336, 4096
    assert rep.nvfp4_bytes(M, N, K) == N * K * 0.5625 + M * K * 2 + M * N * 2
    assert rep.traffic_bytes("nvfp4_w4a16", M, N, K) == rep.nvfp4_bytes(M, N, K)
    assert rep.traffic_bytes("bf16", M, N, K) == N * K * 2 + M * K * 2 + M * N * 2
    assert rep.traffic_bytes("fp8", M, N, K) == N * K + M * K + M * N * 2
    assert rep.traffic_bytes("int4", M, N, K) == N * K * (0.5 + 4 / 128) + M * K * 2 + M * N * 2
    with pytest.raises(ValueError, match="unknown kernel"):
        rep.traffic_bytes("int8", M, N, K)


def test_units():
    # 3e6 bytes in 1 µs = 3 TB/s; 2·1000·1000·1000 FLOP in 2 µs = 1000 TFLOP/s
    assert rep.tbps(3e6, 1.0) == pytest.approx(3.0)
    assert rep.tflops(1000, 1000, 1000, 2.0) == pytest.approx(1000.0)
    assert rep.bytes_floor_us(3e6, 3.0) == pytest.approx(1.0)
    assert rep.flop_floor_us(1000, 1000, 1000, 1000.0) == pytest.approx(2.0)


@pytest.mark.parametrize("K,N", rep.SHAPES)
@pytest.mark.parametrize("bw,peak", [(3.35, 989.0), (3.0, 989.0), (4.8, 989.0)])
def test_crossover_m_is_where_the_two_floors_meet(K, N, bw, peak):
    m = rep.crossover_m(N, K, bw, peak)
    assert 30 < m < 200  # ≈ 83 without activation traffic at 3.35 TB/s
    bytes_us = rep.bytes_floor_us(rep.nvfp4_bytes(m, N, K), bw)
    assert bytes_us == pytest.approx(rep.flop_floor_us(m, N, K, peak), rel=1e-9)
    # below it the bytes floor dominates, above it the FLOP floor
    lo, hi = math.floor(m) - 1, math.ceil(m) + 1
    assert rep.bytes_floor_us(rep.nvfp4_bytes(lo, N, K), bw) > rep.flop_floor_us(lo, N, K, peak)
    assert rep.bytes_floor_us(rep.nvfp4_bytes(hi, N, K), bw) < rep.flop_floor_us(hi, N, K, peak)


def test_crossover_m_bf16_weights_is_about_four_times_later():
    ratio = rep.crossover_m(4096, 4096, 3.0, 989.0, kernel="bf16") / rep.crossover_m(4096, 4096, 3.0, 989.0)
    assert 3.0 < ratio < 4.0
    assert rep.crossover_m(16, 16, 3.0, 989.0) == math.inf  # activations alone outweigh the FLOPs


@pytest.mark.parametrize("M,K,N,targets", [
    (1, 8192, 57344, [("copy", 0.85)]),                       # 264 MB of NVFP4 weight
    (8, 4096, 14336, [("copy", 0.85)]),                       # 33 MB ≥ 30 MB
    (8, 4096, 4096, [("fp8", 1.0), ("int4", 1.0)]),           # 9.4 MB: beat both peers
    (9, 4096, 14336, [("bf16", 2.5), ("fp8", 1.0)]),          # N·K = 58.7 M ≥ 58 M
    (32, 4096, 6144, [("bf16", 1.5), ("fp8", 1.0)]),
    (33, 4096, 6144, [("bf16", 1.5)]),
    (64, 8192, 57344, [("bf16", 2.5)]),
    (65, 4096, 4096, [("bf16", 1.3)]), (128, 4096, 4096, [("bf16", 1.3)]),
    (129, 4096, 4096, [("bf16", 1.0)]), (1023, 4096, 4096, [("bf16", 1.0)]),
    (1024, 4096, 4096, [("bf16", 0.9)]), (8192, 4096, 4096, [("bf16", 0.9)]),
])
def test_target_regimes(M, K, N, targets):
    assert rep.targets_for(M, N, K) == targets


def test_bandwidth_verdict_at_the_boundary():
    M, N, K, copy = 8, 14336, 4096, 3.0
    at_target_us = rep.nvfp4_bytes(M, N, K) / (0.85 * copy * 1e6)
    assert rep.verdict("nvfp4_w4a4", M, N, K, at_target_us * 0.999, copy, {}) is True
    assert rep.verdict("nvfp4_w4a4", M, N, K, at_target_us * 1.01, copy, {}) is False
    assert rep.verdict("bf16", M, N, K, 1.0, copy, {"bf16": 2.0}) is None  # baselines have no target


def test_peer_verdicts():
    N, K = 4096, 4096
    small = {"fp8": 10.0, "int4": 9.0}
    assert rep.verdict("nvfp4_w4a16", 1, N, K, 8.9, 3.0, small) is True  # faster than both
    assert rep.verdict("nvfp4_w4a16", 1, N, K, 9.5, 3.0, small) is False  # slower than int4
    assert rep.verdict("nvfp4_w4a16", 1, N, K, 8.0, 3.0, {"fp8": 10.0}) is None  # int4 row missing
    assert rep.verdict("nvfp4_w4a16", 64, N, K, 10.0, 3.0, {"bf16": 15.0}) is True  # 1.5× on a small shape
    assert rep.verdict("nvfp4_w4a16", 64, N, K, 10.1, 3.0, {"bf16": 15.0}) is False
    assert rep.verdict("nvfp4_w4a16", 32, N, K, 10.0, 3.0, {"bf16": 15.0, "fp8": 9.0}) is False  # FP8 faster
    assert rep.verdict("nvfp4_w4a16", 128, N, K, 10.0, 3.0, {"bf16": 13.0}) is True
    assert rep.verdict("nvfp4_w4a16", 512, N, K, 10.0, 3.0, {"bf16": 10.0}) is True  # equal: "never slower"
    assert rep.verdict("nvfp4_w4a4", 4096, N, K, 11.0, 3.0, {"bf16": 10.0}) is True  # 0.909× bf16 ≥ 0.9
    assert rep.verdict("nvfp4_w4a4", 4096, N, K, 11.2, 3.0, {"bf16": 10.0}) is False
    assert rep.verdict("nvfp4_w4a4", 4096, N, K, 11.0, 3.0, {}) is None


# ---------------------------------------------------------------- report
def _report(rows=None, **extra):
    rows = rows if rows is not None else [
        {"M": 1, "N": 14336, "K": 4096, "kernel": "bf16", "us": 42.5},
        {"M": 1, "N": 14336, "K": 4096, "kernel": "fp8", "us": 23.6},
        {"M": 1, "N": 14336, "K": 4096, "kernel": "nvfp4_w4a16", "us": 12.0},
        {"M": 1, "N": 14336, "K": 4096, "kernel": "nvfp4_w4a4", "us": 20.0},
        {"M": 1, "N": 14336, "K": 4096, "kernel": "int4", "us": 20.0},
        {"M": 1, "N": 14336, "K": 4096, "kernel": "emulation", "us": 1800.0, "timing": "eager"},
        {"M": 64, "N": 14336, "K": 4096, "kernel": "nvfp4_w4a16", "us": 30.0},
        {"M": 4096, "N": 4096, "K": 4096, "kernel": "bf16", "us": 180.0},
        {"M": 4096, "N": 4096, "K": 4096, "kernel": "nvfp4_w4a4", "us": 190.0, "check_ok": False},
    ]
    return {"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-25T17:55:00Z", "copy_TBps": 3.0, "rows": rows, **extra}


def test_enrich_rows_ratios_and_verdicts():
    rows = {(r["M"], r["N"], r["kernel"]): r for r in rep.enrich_rows(_report()["rows"], 3.0)}
    w4a16 = rows[(1, 14336, "nvfp4_w4a16")]
    assert w4a16["x_bf16"] == pytest.approx(42.5 / 12.0)
    assert w4a16["x_fp8"] == pytest.approx(23.6 / 12.0)
    assert w4a16["x_int4"] == pytest.approx(20.0 / 12.0)
    assert w4a16["TBps"] == pytest.approx(rep.nvfp4_bytes(1, 14336, 4096) / 12.0 * 1e-6)
    assert w4a16["pct_copy"] == pytest.approx(100 * w4a16["TBps"] / 3.0)
    assert w4a16["met"] is True  # 33.1 MB in 12 µs = 2.76 TB/s ≥ 0.85 × 3.0
    assert rows[(1, 14336, "nvfp4_w4a4")]["met"] is False  # 1.65 TB/s
    assert rows[(64, 14336, "nvfp4_w4a16")]["met"] is None and rows[(64, 14336, "nvfp4_w4a16")]["x_bf16"] is None
    assert rows[(1, 14336, "bf16")]["met"] is None and rows[(1, 14336, "bf16")]["target"] is None
    # faster than 0.9× bf16 but the output was wrong: missed
    assert rows[(4096, 4096, "nvfp4_w4a4")]["met"] is False


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.pop("device"), "missing key 'device'"),
    (lambda r: r.update(copy_TBps=0), "copy_TBps"),
    (lambda r: r.update(copy_TBps=float("nan")), "copy_TBps"),
    (lambda r: r.update(rows={}), "'rows' must be list"),
    (lambda r: r["rows"][0].pop("us"), r"rows\[0\] misses key 'us'"),
    (lambda r: r["rows"][0].update(kernel="int8"), "expected one of"),
    (lambda r: r["rows"][0].update(M=True), r"rows\[0\].M must be a positive integer"),
    (lambda r: r["rows"][0].update(M=2.0), r"rows\[0\].M must be a positive integer"),
    (lambda r: r["rows"][0].update(us=-1.0), r"rows\[0\].us must be a positive finite"),
    (lambda r: r["rows"][0].update(us=float("inf")), r"rows\[0\].us must be a positive finite"),
])
def test_validate_report_rejects(mutate, message):
    report = _report()
    mutate(report)
    with pytest.raises(ReportError, match=message):
        rep.validate_report(report)


def test_render_markdown():
    text = rep.render_markdown(_report(notes=["fp8 padded"], errors=["M=3 boom"]))
    assert text.startswith("# NVFP4 GEMM benchmark: NVIDIA H100 80GB HBM3\n")
    assert "**3.00 TB/s**" in text and "2026-11-25T17:55:00Z" in text
    assert "## K=4096 → N=4096" in text and "## K=4096 → N=14336" in text
    assert text.index("## K=4096 → N=4096") < text.index("## K=4096 → N=14336")  # smaller shape first
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line
                  and not line.startswith("| M ") and not line.startswith("| kernel")
                  and not line.startswith("| nvfp4_w4a")]
    assert len(table_rows) == len(_report()["rows"])
    line = next(l for l in table_rows if "| 1 | nvfp4_w4a16 |" in l)
    assert "| 12.0 | 2.76 | 92 |" in line and "3.54×" in line and "1.97×" in line and "1.67×" in line
    assert "| met |" in line
    assert "≥85% copy (2.55 TB/s)" in line
    assert "**wrong output**" in text and "n/a (a peer row is missing)" in text and "**missed**" in text
    assert "1800 †" in text and "† timed eagerly" in text
    assert "- note: fp8 padded" in text and "- **error**: M=3 boom" in text
    # summary counts: w4a16 has 1 verdict (M=1, met), w4a4 has 2 (M=1 missed, M=4096 wrong output)
    assert "| kernel | targets met | M ≤ 8 | M 9–64 | M 65–128 | M 129–512 | ≥ 1024 |" in text
    assert "| nvfp4_w4a16 | 1/1 | 1/1 | — | — | — | — |" in text
    assert "| nvfp4_w4a4 | 0/2 | 0/1 | — | — | — | 0/1 |" in text


def test_render_cli_roundtrip(tmp_path, capsys):
    src = tmp_path / "gemm.json"
    src.write_text(json.dumps(_report()))
    out = tmp_path / "sub" / "gemm.md"
    assert rep.main([str(src), "-o", str(out)]) == 0
    assert out.read_text() == rep.render_markdown(_report())
    assert sorted(p.name for p in out.parent.iterdir()) == ["gemm.md"]  # no temp file left
    assert rep.main([str(src)]) == 0
    assert capsys.readouterr().out == rep.render_markdown(_report())


def test_render_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"device": "x"}))
    out = tmp_path / "bad.md"
    assert rep.main([str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.json" in err and "missing key" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        rep.main([])
    assert e.value.code == 2


def test_render_cli_never_writes_over_its_input(tmp_path, capsys):
    src = tmp_path / "gemm.json"
    src.write_text(json.dumps(_report()))
    before = src.read_bytes()
    assert rep.main([str(src), "-o", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is the input" in err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["gemm.json"]


def test_floors_markdown_covers_every_shape_and_m():
    text = rep.render_floors_markdown()
    for K, N in rep.SHAPES:
        assert f"### K={K} → N={N}" in text
    data_rows = [l for l in text.splitlines() if l.startswith("| ") and l[2].isdigit()]
    assert len(data_rows) == len(rep.SHAPES) * len(rep.M_VALUES)
    # M=1 of 4096→14336 at 3.0 TB/s: 33.1 MB / 3.0 TB/s = 11.0 µs; best ratio vs bf16 ≈ 3.55×
    row = next(l for l in text.splitlines() if l.startswith("| 1 | 33.1 |"))
    assert "| 11.0 |" in row and "3.55×" in row


# ---------------------------------------------------------------- bench_gemm pure parts
def test_parse_shape():
    assert bench_gemm.parse_shape("4096->14336") == (4096, 14336)
    assert bench_gemm.parse_shape(" 28672 → 8192 ") == (28672, 8192)
    for bad in ("4096x14336", "4096->", "4096->100", "0->16", "a->b"):
        with pytest.raises(ValueError):
            bench_gemm.parse_shape(bad)


def test_sanitize_card_name_and_stem():
    assert bench_gemm.sanitize_card_name("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert bench_gemm.sanitize_card_name("NVIDIA H200 (MIG 1g.18gb)") == "NVIDIA-H200-MIG-1g.18gb"
    assert bench_gemm.sanitize_card_name("///") == "unknown-gpu"
    assert bench_gemm.output_stem("NVIDIA H100 80GB HBM3", False) == "gemm-NVIDIA-H100-80GB-HBM3"
    assert bench_gemm.output_stem("NVIDIA H100 80GB HBM3", True, kernel_path="gemv") == "gemm-NVIDIA-H100-80GB-HBM3-gemv-quick"
    assert bench_gemm.output_stem("x", True, name="mine") == "mine"


def test_rotation_count_defeats_l2():
    l2 = 50 * 2**20
    for K, N in rep.SHAPES:
        for kernel in ("nvfp4_w4a4", "bf16", "fp8", "int4"):
            size = bench_gemm.weight_copy_bytes(kernel, N, K)
            r = bench_gemm.rotation_count(size, l2, 3.0, 4)
            assert r >= 4 and r * size >= 3.0 * l2
    assert bench_gemm.weight_copy_bytes("nvfp4_w4a16", 4096, 4096) == 4096 * 4096 * 9 // 16 + 4
    assert bench_gemm.rotation_count(4096 * 4096 * 9 // 16, l2, 3.0, 4) == 17
    assert bench_gemm.rotation_count(1, l2, 3.0, 4, max_calls=64) == 64  # capped
    # the biggest shape with every kernel stays far below the 60 GiB budget
    copies = {k: bench_gemm.rotation_count(bench_gemm.weight_copy_bytes(k, 57344, 8192), l2, 3.0, 4)
              for k in rep.KERNELS}
    assert bench_gemm.shape_gpu_bytes(8192, 57344, 4096, rep.KERNELS, copies) < 40 * 2**30


def test_recorded_command_leaves_out_the_output_folder():
    argv = ["--out-dir", "bench-out", "--max-replays", "60", "--out-dir=elsewhere", "--quick"]
    assert bench_gemm.recorded_argv(argv) == ["--max-replays", "60", "--quick"]


def test_replay_count():
    assert bench_gemm.replay_count(1.0, 20, 200) == 20
    assert bench_gemm.replay_count(1e-5, 20, 200) == 200
    assert bench_gemm.replay_count(1e-3, 20, 200) == 50
    assert bench_gemm.replay_count(0.0, 20, 200) == 200


def test_parse_args_defaults_and_quick():
    args = bench_gemm.parse_args([])
    assert args.shape_list == rep.SHAPES and args.m_list == rep.M_VALUES and args.kernel_list == rep.DEFAULT_KERNELS
    assert set(args.shape_list) == {(4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096), (8192, 57344),
                                    (28672, 8192), (4096, 14336)}
    assert args.m_list == (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
    assert "emulation" not in args.kernel_list and "int4" in args.kernel_list
    quick = bench_gemm.parse_args(["--quick", "--out-dir", "out/x", "--kernels", "bf16,nvfp4_w4a4"])
    assert quick.shape_list == bench_gemm.QUICK_SHAPES and quick.m_list == bench_gemm.QUICK_M_VALUES
    assert quick.kernel_list == ("bf16", "nvfp4_w4a4") and str(quick.out_dir) == "out/x"
    custom = bench_gemm.parse_args(["--shapes", "64->32,32->48", "--m", "16,1,16"])
    assert custom.shape_list == ((64, 32), (32, 48)) and custom.m_list == (1, 16)


@pytest.mark.parametrize("argv", [["--shapes", "4096x4096"], ["--m", "0,1"], ["--m", "a"], ["--kernels", "int8"],
                                  ["--min-replays", "5"], ["--max-replays", "10"], ["--l2-factor", "0"],
                                  ["--kernel-path", "cutlass"], ["--emulation-max-m", "0"], ["--copy-gib", "-1"]])
def test_parse_args_rejects(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench_gemm.parse_args(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.skipif(HAVE_CUDA, reason="checks the no-GPU message; this machine has a GPU")
def test_main_without_gpu_exits_2(tmp_path, capsys):
    assert bench_gemm.main(["--quick", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA GPU" in err
    assert list(tmp_path.iterdir()) == []


def test_report_notes_a_cublaslt_path_that_could_not_run():
    import datetime
    import types

    why = "dequantize-then-GEMM path: cuBLASLt has no 16-bit algorithm for this problem/device"
    kernels = types.SimpleNamespace(dequant_gemm_status=lambda: why, native_fp4_status=lambda: None)
    bench = types.SimpleNamespace(torch=torch, k=kernels, notes=[], checks=[], rows=[], errors=[],
                                  fp8_padded=set(), l2_bytes=50 << 20)
    args = bench_gemm.parse_args(["--quick", "--kernels", "nvfp4_w4a4,bf16"])
    bw = {"memcpy": 4.0, "kernel": 4.1, "read": 4.2}
    started = datetime.datetime(2026, 12, 5, tzinfo=datetime.timezone.utc)
    notes = bench_gemm.build_report(bench, args, "GPU", "9.0", bw, bw, 1 << 30, started)["notes"]
    assert [n for n in notes if why in n] == [f"{why}: those rows ran on the fused-decode kernels"]
    bench.k = types.SimpleNamespace(dequant_gemm_status=lambda: None)  # ran, or a library without it
    assert not [n for n in bench_gemm.build_report(bench, args, "GPU", "9.0", bw, bw, 1 << 30, started)["notes"]
                if "fused-decode" in n]


# ---------------------------------------------------------------- on a GPU
@pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA GPU (the benchmark times CUDA graphs)")
def test_tiny_benchmark_on_gpu(tmp_path):
    kernels = ["bf16", "fp8", "int4", "emulation"]
    try:
        from plugins.library import find_kernels_library

        find_kernels_library()
        kernels += ["nvfp4_w4a4", "nvfp4_w4a16"]
    except FileNotFoundError:
        pass  # the baselines still run; the NVFP4 rows need build/libnvfp4_kernels.so
    rc = bench_gemm.main(["--shapes", "256->512", "--m", "1,17,1024", "--kernels", ",".join(kernels),
                          "--out-dir", str(tmp_path), "--name", "tiny", "--copy-gib", "0.125"])
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert rc == 0, report["errors"]
    rep.validate_report(report)
    assert {(r["M"], r["kernel"]) for r in report["rows"]} == {(m, k) for m in (1, 17, 1024) for k in kernels}
    assert 0.1 < report["copy_TBps"] < 20
    assert all(r.get("check_ok", True) for r in report["rows"])
    assert (tmp_path / "tiny.md").read_text() == rep.render_markdown(report)


@pytest.mark.parametrize("module", [bench_gemm, rep])
def test_help_renders(module, capsys):
    with pytest.raises(SystemExit) as e:
        module.parse_args(["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_report_json_is_one_line_per_row_and_reads_back():
    report = {"device": "card", "notes": ["a", "b"], "rows": [{"M": m, "us": 1.5 * m, "target": "≥ 1.0×"} for m in (1, 2, 3)],
              "errors": []}
    text = report_json(report)
    assert json.loads(text) == report
    lines = text.splitlines()
    assert sum('"M": ' in line for line in lines) == 3 and len(lines) == 1 + 2 + (1 + 3 + 1) + 1 + 1
