"""Registers, spills, shared memory and grid size of every Triton kernel, without a GPU.

Each kernel is compiled ahead of time (``triton.compile`` with a ``GPUTarget``; Triton's
wheel ships ``ptxas`` and ``cuobjdump``) at exactly the launch configuration our
launchers would choose (``genesae_fast.kernels.launch``) for a training step at the
shapes below, for sm_80 (A100, 108 SMs) and sm_90 (H100 SXM, 132 SMs). Per kernel it
prints registers per thread, stack bytes per thread (spills land there), shared memory,
warps, stages and programs launched, and flags any spill above ``MAX_STACK`` bytes per
thread or any grid under one wave (fewer programs than SMs).

A step at (B, d, n, k) launches: the encoder (split + merge kernels when
k <= FUSED_MAX_K; above that the chunked cuBLAS GEMM + torch.topk path, which has no
Triton kernel), the decoder forward (gather_combine), the decoder backward (gather_dot,
scatter_outer atomic or deterministic segment) and the encoder backward (gather_combine,
scatter_outer). k = d / 2 is AuxK's k_aux.

    python benchmarks/kernel_resources.py            # the full table (slow: compiles ~60 kernels)
    python benchmarks/kernel_resources.py --quick    # the subset the test compiles

Exit status 1 when a limit is broken. Compiles go to a fresh temporary Triton cache, so
nothing is reused across runs.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

B = 4096
ARCH_SMS = {80: 108, 90: 132}  # A100 SXM and H100 SXM
MAX_STACK = 64  # bytes per thread
D_VALUES = (512, 768, 4096)
N_VALUES = (16384, 32768, 65536, 131072)
DTYPES = ("fp32", "bf16")


def k_values(d: int) -> tuple:
    """TopK's usual k and AuxK's k_aux = d / 2."""
    return (32, 64, d // 2)


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a training step, enough to compile it ahead of time."""

    kernel: str  # attribute name in its module
    module: str  # genesae_fast.kernels.<module>
    pointers: tuple  # ((arg name, Triton pointer type), ...); other non-constexpr args are i32
    constexprs: tuple  # ((name, value), ...), block sizes and flags
    num_warps: int
    num_stages: int
    programs: int


@dataclass
class Resources:
    """What ptxas assigned to one compiled kernel (per thread unless noted)."""

    registers: int
    stack: int  # bytes: spills and local arrays
    shared: int  # bytes per program (dynamic, as Triton requests it)
    extra: dict = field(default_factory=dict)


def _plan_launch(kernel, module, pointers, plan, extra_constexprs=()):
    cx = tuple(sorted(plan.constexprs.items())) + tuple(extra_constexprs)
    return Launch(kernel, module, tuple(pointers), cx, plan.num_warps, plan.num_stages, plan.programs)


def encoder_launches(B, d, n, k, dtype, dev) -> list:
    """The fused encoder's two kernels (none when k is routed to the chunked path)."""
    from genesae_fast.kernels import launch

    if k > launch.FUSED_MAX_K:
        return []
    plan = launch.encode_plan(B, n, d, k, dtype != "fp32", dev)
    ptr = "*" + dtype
    split = _plan_launch(
        "_topk_encode_split_kernel", "topk_encode",
        [("xc_ptr", ptr), ("w_ptr", ptr), ("b_ptr", ptr), ("mask_ptr", "*u8"), ("cand_ptr", "*i64")],
        plan.split,
        # fp32 inputs: tf32 when torch allows it (the training default we recommend)
        (("DOT_FP32", False), ("HAS_MASK", False), ("INPUT_PRECISION", "tf32" if dtype == "fp32" else "ieee")),
    )
    merge = _plan_launch(
        "_topk_merge_kernel", "topk_encode",
        [("cand_ptr", "*i64"), ("vals_ptr", ptr), ("idx_ptr", "*i64")], plan.merge,
    )
    return [split, merge]


def row_launches(B, d, n, k, dtype, dev) -> list:
    """The sparse row kernels of a step's decoder forward and both backward passes."""
    from genesae_fast.kernels import launch

    ptr = "*" + dtype
    return [
        _plan_launch(
            "_gather_combine_kernel", "sparse_rows",
            [("idx_ptr", "*i64"), ("w_ptr", ptr), ("table_ptr", ptr), ("bias_ptr", ptr), ("out_ptr", ptr)],
            launch.gather_combine_plan(B, k, d, dev), (("HAS_BIAS", True),),
        ),
        _plan_launch(
            "_gather_dot_kernel", "sparse_rows",
            [("idx_ptr", "*i64"), ("table_ptr", ptr), ("rows_ptr", ptr), ("out_ptr", ptr)],
            launch.gather_dot_plan(B, k, d, dev),
        ),
        _plan_launch(
            "_scatter_outer_atomic_kernel", "sparse_rows",
            [("idx_ptr", "*i64"), ("w_ptr", ptr), ("rows_ptr", ptr), ("out_ptr", "*fp32"), ("bias_out_ptr", "*fp32")],
            launch.scatter_atomic_plan(B, k, d, dev), (("HAS_BIAS", True),),
        ),
        _plan_launch(
            "_scatter_outer_segment_kernel", "sparse_rows",
            [("order_ptr", "*i64"), ("start_ptr", "*i64"), ("end_ptr", "*i64"), ("w_ptr", ptr), ("rows_ptr", ptr),
             ("out_ptr", "*fp32"), ("bias_out_ptr", "*fp32")],
            launch.scatter_segment_plan(n, d, dev), (("HAS_BIAS", True),),
        ),
    ]


def step_launches(B, d, n, k, dtype, dev) -> list:
    """Every Triton launch of one training step at (B, d, n, k) in ``dtype`` on ``dev``."""
    return encoder_launches(B, d, n, k, dtype, dev) + row_launches(B, d, n, k, dtype, dev)


def _tools():
    import triton

    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    cuobjdump = os.path.join(bin_dir, "cuobjdump")
    if not (os.access(cuobjdump, os.X_OK) and os.access(os.path.join(bin_dir, "ptxas"), os.X_OK)):
        raise FileNotFoundError(f"ptxas/cuobjdump not found in {bin_dir}")
    return cuobjdump


def _source(launch: Launch):
    import importlib

    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(f"genesae_fast.kernels.{launch.module}"), launch.kernel)
    pointers, cx = dict(launch.pointers), dict(launch.constexprs)
    sig, attrs = {}, {}
    for i, (name, param) in enumerate(zip(fn.arg_names, fn.params, strict=True)):
        if param.is_constexpr:
            sig[name] = "constexpr"
        elif name in pointers:
            sig[name] = pointers[name]
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 16-byte aligned
        else:
            sig[name] = "i32"
    missing = [n for n, t in sig.items() if t == "constexpr" and n not in cx]
    if missing:
        raise KeyError(f"{launch.kernel}: no value for constexpr {missing}")
    return ASTSource(fn, sig, constexprs=cx, attrs=attrs)


_MEMO: dict = {}


def compile_resources(launch: Launch, arch: int) -> Resources:
    """Compile ``launch`` for ``sm_<arch>`` and read its resources (memoised within a run)."""
    key = (launch.kernel, launch.pointers, launch.constexprs, launch.num_warps, launch.num_stages, arch)
    if key in _MEMO:
        return _MEMO[key]
    import triton
    from triton.backends.compiler import GPUTarget

    compiled = triton.compile(
        _source(launch), target=GPUTarget("cuda", arch, 32),
        options={"num_warps": launch.num_warps, "num_stages": launch.num_stages},
    )
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(compiled.asm["cubin"])
        fh.flush()
        text = subprocess.run([_tools(), "-res-usage", fh.name], capture_output=True, text=True, check=True).stdout
    usage = dict(re.findall(r"(REG|STACK|LOCAL|SHARED):(\d+)", text))
    res = Resources(
        registers=int(usage["REG"]),
        stack=int(usage["STACK"]) + int(usage.get("LOCAL", 0)),
        shared=int(compiled.metadata.shared) + int(usage.get("SHARED", 0)),
    )
    _MEMO[key] = res
    return res


def shape_table(full: bool) -> list:
    """(d, n, k, dtype) rows: every combination, or a subset covering each distinct config."""
    if full:
        return [(d, n, k, t) for d in D_VALUES for n in N_VALUES for k in k_values(d) for t in DTYPES]
    # both fused-encoder widths (k_pad 32 and 64) at the extremes of n (they change the
    # split count and the merge width), and AuxK's k = d / 2 (row kernels) at d = 512, 4096
    return [(768, n, k, t) for n, k in ((16384, 32), (131072, 64)) for t in DTYPES] + [
        (d, 32768, d // 2, t) for d in (512, 4096) for t in DTYPES
    ]


def collect(shapes, archs) -> list:
    """One dict per (shape, arch, kernel) with the launch and its resources."""
    from genesae_fast.kernels.launch import DeviceSpec

    rows = []
    for arch in archs:
        dev = DeviceSpec(ARCH_SMS[arch], arch)
        for d, n, k, dtype in shapes:
            for ln in step_launches(B, d, n, k, dtype, dev):
                res = compile_resources(ln, arch)
                rows.append(dict(arch=arch, sms=dev.sm_count, d=d, n=n, k=k, dtype=dtype, launch=ln, res=res))
    return rows


def violations(rows) -> list:
    """Lines naming each kernel with a spill above MAX_STACK or a grid under one wave."""
    out = []
    for r in rows:
        ln, res = r["launch"], r["res"]
        where = f"sm_{r['arch']} {ln.kernel} d={r['d']} n={r['n']} k={r['k']} {r['dtype']}"
        if res.stack > MAX_STACK:
            out.append(f"{where}: {res.stack} B/thread of stack (spills), limit {MAX_STACK}")
        if ln.programs < r["sms"]:
            out.append(f"{where}: {ln.programs} programs < {r['sms']} SMs (under one wave)")
    return out


def format_table(rows) -> str:
    """A markdown table, one line per (arch, shape, kernel)."""
    head = "| arch | d | n | k | dtype | kernel | regs | stack B | smem B | warps | stages | programs | waves |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ln, res = r["launch"], r["res"]
        lines.append(
            f"| sm_{r['arch']} | {r['d']} | {r['n']} | {r['k']} | {r['dtype']} | {ln.kernel} | {res.registers} | "
            f"{res.stack} | {res.shared} | {ln.num_warps} | {ln.num_stages} | {ln.programs} | "
            f"{ln.programs / r['sms']:.1f} |"
        )
    return "\n".join(lines)


def format_summary(rows) -> str:
    """Per (arch, kernel, dtype) over all shapes: register and stack maxima, fewest programs."""
    agg = {}
    for r in rows:
        ln, res = r["launch"], r["res"]
        key = (r["arch"], ln.kernel, r["dtype"])
        a = agg.setdefault(key, dict(regs=0, stack=0, smem=0, warps=set(), programs=None, sms=r["sms"]))
        a["regs"], a["stack"], a["smem"] = max(a["regs"], res.registers), max(a["stack"], res.stack), max(a["smem"], res.shared)
        a["warps"].add(ln.num_warps)
        a["programs"] = ln.programs if a["programs"] is None else min(a["programs"], ln.programs)
    lines = ["| arch | kernel | dtype | max regs | max stack B | max smem B | warps | fewest programs (waves) |",
             "|---|---|---|---|---|---|---|---|"]
    for (arch, kernel, dtype), a in sorted(agg.items()):
        lines.append(f"| sm_{arch} | {kernel} | {dtype} | {a['regs']} | {a['stack']} | {a['smem']} | "
                     f"{'/'.join(map(str, sorted(a['warps'])))} | {a['programs']} ({a['programs'] / a['sms']:.1f}) |")
    return "\n".join(lines)


def to_json(rows) -> list:
    """The rows as plain dicts (for the test, which runs this script in a fresh process)."""
    out = []
    for r in rows:
        ln, res = r["launch"], r["res"]
        out.append({**{k: r[k] for k in ("arch", "sms", "d", "n", "k", "dtype")}, "kernel": ln.kernel,
                    "registers": res.registers, "stack": res.stack, "shared": res.shared,
                    "num_warps": ln.num_warps, "num_stages": ln.num_stages, "programs": ln.programs})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="compile the test's representative subset only")
    ap.add_argument("--arch", type=int, nargs="+", default=sorted(ARCH_SMS), choices=sorted(ARCH_SMS))
    ap.add_argument("--json", help="also write the rows and violations to this JSON file")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        # under the interpreter @triton.jit yields interpreter objects that cannot be compiled
        print("kernel_resources: unset TRITON_INTERPRET (kernels must be compiled, not interpreted)")
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated (silences its warning)
    with tempfile.TemporaryDirectory(prefix="genesae-kres-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # a fresh cache: nothing reused across runs
        rows = collect(shape_table(full=not args.quick), args.arch)
    print(format_table(rows))
    print()
    print(format_summary(rows))
    bad = violations(rows)
    for line in bad:
        print("VIOLATION:", line)
    print(f"{len(rows)} launches, {len(_MEMO)} distinct kernels compiled, {len(bad)} violations")
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump({"rows": to_json(rows), "violations": bad}, fh)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
