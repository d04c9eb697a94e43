"""`kcompile profile`: each kernel timed alone against this machine's measured peak (roofline)."""
from __future__ import annotations

import json
import math

import numpy as np

from .documents import _kernel_bytes, graph_stats, kernel_flops
from .session import Session
from .stages import InspectError, check_request
from .text import _human


_PROBE = None
_KEEP = []          # JIT-loaded probe code stays alive for the process


def _cache_levels() -> list[tuple[str, int]]:
    """(name, bytes) of this CPU's data caches, smallest first (Linux sysfs; else typical)."""
    import glob
    levels = {}
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            kind = open(f"{d}/type").read().strip()
            if kind not in ("Data", "Unified"):
                continue
            level = int(open(f"{d}/level").read().strip())
            size = open(f"{d}/size").read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            levels[level] = int(size.rstrip("KMG")) * mult
        except (OSError, ValueError):
            continue
    if not levels:
        levels = {1: 32 << 10, 2: 1 << 20}
    return [(f"L{n}", levels[n]) for n in sorted(levels)]


def _probe_module(width: int):
    """Two probes, built with llvmlite: `kc_peak(out, n)`, 12 independent chains of
    vector FMAs; `kc_read(buf, nvec, reps, out)`, a read stream over nvec vectors."""
    from llvmlite import ir as llir
    from kcompile.codegen.irutil import F32, I64, PTR, i64, loop
    module = llir.Module(name="kc_probe")
    vt = llir.VectorType(F32, width)
    void = llir.VoidType()

    fn = llir.Function(module, llir.FunctionType(void, [PTR, I64]), name="kc_peak")
    out, n = fn.args
    b = llir.IRBuilder(fn.append_basic_block("entry"))
    m, c = llir.Constant(vt, [0.75] * width), llir.Constant(vt, [0.25] * width)
    init = [llir.Constant(vt, [1.0 + j / 16] * width) for j in range(12)]
    fma = llir.Function(module, llir.FunctionType(vt, [vt, vt, vt]), name=f"llvm.fma.v{width}f32")
    accs = loop(b, n, lambda b, i, accs: [b.call(fma, [a, m, c]) for a in accs], init=init)
    total = accs[0]
    for a in accs[1:]:
        total = b.fadd(total, a)
    b.store(total, out, align=4)
    b.ret_void()

    fn = llir.Function(module, llir.FunctionType(void, [PTR, I64, I64, PTR]), name="kc_read")
    buf, nvec, reps, out = fn.args
    b = llir.IRBuilder(fn.append_basic_block("entry"))
    zero = [llir.Constant(vt, [0.0] * width)] * 8

    def inner(b, i, accs):
        base = b.mul(i, i64(8))
        return [b.fadd(a, b.load(b.gep(buf, [b.add(base, i64(j))], source_etype=vt), typ=vt,
                                 align=64)) for j, a in enumerate(accs)]
    accs = loop(b, reps, lambda b, r, accs: loop(b, b.udiv(nvec, i64(8)), inner, init=accs,
                                                 name="v"), init=zero, name="r")
    total = accs[0]
    for a in accs[1:]:
        total = b.fadd(total, a)
    b.store(total, out, align=4)
    b.ret_void()
    return str(module)


def machine_peak() -> dict:
    """This core's peak: single-precision FMA throughput (12 independent chains of
    full-width vector FMAs) and the read bandwidth of each cache level and of memory,
    measured once per process. Falls back to stated assumptions (100 GFLOP/s per core,
    10 GB/s) if a probe fails."""
    global _PROBE
    if _PROBE is not None:
        return json.loads(json.dumps(_PROBE))
    import ctypes
    import time
    from kcompile.codegen import jit
    from kcompile.codegen.target import host
    from kcompile.runtime.arena import aligned_bytes
    _, cpu, features = host()
    feats = {f[1:] for f in features.split(",") if f.startswith("+")}
    width = 16 if "avx512f" in feats else 8 if "avx" in feats else 4
    peak = {"cpu": cpu, "vector_width": width, "levels": []}

    def best_of(call, n=5):
        t_best = math.inf
        for _ in range(n):
            t = time.perf_counter()
            call()
            t_best = min(t_best, time.perf_counter() - t)
        return t_best
    try:
        code = jit.build_object(_probe_module(width))
        loaded = jit.load_object(code.obj, ["kc_peak", "kc_read"], name="kc_probe")
        _KEEP.append(loaded)
        fma = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(loaded.addresses["kc_peak"])
        read = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_void_p)(loaded.addresses["kc_read"])
        out = aligned_bytes(4 * width)
        iters = 200_000
        fma(out.ctypes.data, 1000)
        t = best_of(lambda: fma(out.ctypes.data, iters))
        peak["gflops"] = 2.0 * width * 12 * iters / t / 1e9
        peak["gflops_source"] = f"measured: 12 chains of {width}-wide FMAs"
        levels = _cache_levels()
        sizes = [(name, size // 2) for name, size in levels] + \
            [("DRAM", max(64 << 20, 4 * levels[-1][1]))]
        vec = 4 * width
        for name, size in sizes:
            nvec = max(8, size // vec // 8 * 8)
            buf = aligned_bytes(nvec * vec)
            buf.view(np.float32)[:] = 1.0
            reps = max(1, (32 << 20) // (nvec * vec))
            read(buf.ctypes.data, nvec, 1, out.ctypes.data)
            t = best_of(lambda: read(buf.ctypes.data, nvec, reps, out.ctypes.data), 3)
            peak["levels"].append({"name": name, "bytes": int(size * 2) if name != "DRAM"
                                   else None, "gbps": nvec * vec * reps / t / 1e9})
        peak["gbps_source"] = "measured: vector read streams per cache level"
    except Exception as e:      # pragma: no cover - a probe failure is reported, not fatal
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        peak.setdefault("gflops", 100.0)
        peak.setdefault("gflops_source", f"assumed (probe failed: {first})")
        if not peak["levels"]:
            peak["levels"] = [{"name": "DRAM", "bytes": None, "gbps": 10.0}]
        peak["gbps_source"] = f"assumed (probe failed: {first})"
    _PROBE = peak
    return json.loads(json.dumps(peak))


def _level_for(peak, nbytes):
    for lv in peak["levels"]:
        if lv["bytes"] is None or nbytes <= lv["bytes"]:
            return lv
    return peak["levels"][-1]


def _feed_value(g, v, rng):
    """A plausible batch for a profile run: ids within their table's bounds, one-hot
    targets, ones for the mask and sample weights, normal noise otherwise."""
    n = g.nodes[v]
    t = n.type
    bound = getattr(g, "input_bounds", {}).get(n.name)
    if bound is not None:       # ids indexing a table (Embedding): must be in [0, bound)
        return rng.integers(0, max(int(bound), 1), t.shape).astype(
            np.int32 if t.dtype == "int32" else np.float32)
    if n.name in ("mask", "sample_weight"):
        return np.ones(t.shape, np.float32)
    if t.dtype == "int32":
        return np.zeros(t.shape, np.int32)
    if n.role == "target" and t.rank >= 1 and t.shape[-1] > 1:
        idx = rng.integers(0, t.shape[-1], t.shape[:-1])
        return np.eye(t.shape[-1], dtype=np.float32)[idx]
    if n.role == "target":
        return rng.integers(0, 2, t.shape).astype(np.float32)
    return rng.standard_normal(t.shape).astype(np.float32)


def profile(model, entry=None, batch_size=32, steps=100, trials=5) -> "ProfileReport":
    """Time each kernel of an entry on one thread, with the arena prepared by one real step.

    Each kernel is compiled a second time as an entry of its own (the codegen's own
    `build_module`, so arguments and addresses are exactly the step's), and called
    from a native loop of at least `steps` repetitions; the best of `trials` such
    runs is its time. Data are warm in cache. The model's own state is not touched
    (the step runs on a copy)."""
    import ctypes
    import dataclasses
    import time
    from llvmlite import ir as llir
    from kcompile.codegen import jit
    from kcompile.codegen.irutil import I64, PTR, i64, loop
    from kcompile.codegen.module import Entry, build_module
    from kcompile.ir.passes.fuse import FusedGraph
    from kcompile.runtime.arena import aligned_bytes, view

    session = Session(model, batch_size, nthreads=1)
    entry = entry or ("train_step" if session.compiled else "predict")
    check_request(entry, "fused")
    session._require(entry)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InspectError(f"steps must be a positive integer, got {steps!r}")
    fg, plan = session.fused(entry), session.plan(entry, 1)
    g = fg.graph
    alone = dataclasses.replace(plan, copies=[])      # a kernel alone copies nothing back
    singles = {n: Entry(f"kc_prof_k{n}", FusedGraph(g, [k]), alone)
               for n, k in enumerate(fg.kernels) if k.kind != "view"}
    module = build_module([Entry(entry, fg, plan), *singles.values()], 1)
    void = llir.VoidType()
    loops = {}
    for n, e in [(None, Entry(entry, fg, plan)), *singles.items()]:
        target = module.get_global(e.name)
        w = llir.Function(module, llir.FunctionType(void, [PTR, PTR, PTR, I64]),
                          name=f"kc_prof.loop.{e.name}")
        state, work, sync, reps = w.args
        b = llir.IRBuilder(w.append_basic_block("entry"))
        loop(b, reps, lambda b, i, _, t=target: b.call(t, [state, work, i64(0), sync]) and [])
        b.ret_void()
        loops[n] = w.name
    code = jit.build_object(str(module))
    loaded = jit.load_object(code.obj, list(loops.values()), name=f"kc_profile_{entry}")
    # Buffers: a copy of the model's state, a fresh arena with a random batch in it.
    st = aligned_bytes(session.state.buffer.nbytes)
    st[:] = session.state.buffer
    wk = aligned_bytes(max(plan.work_bytes, 64))
    syncbuf = aligned_bytes(128)
    rng = np.random.default_rng(0)
    for v in g.leaves():
        if g.nodes[v].role in ("input", "target"):
            loc = plan.locations[v]
            np.copyto(view(wk if loc.region == "work" else st, loc.offset, g.type(v)),
                      _feed_value(g, v, rng), casting="unsafe")
    loop_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int64)
    sa, wa, ya = st.ctypes.data, wk.ctypes.data, syncbuf.ctypes.data
    step = loop_t(loaded.addresses[loops[None]])
    step(sa, wa, ya, 1)                         # the arena as one real step leaves it

    min_trial = 2e-4          # seconds: a timed call long enough to hide the ctypes call

    def best(call):
        call(1)
        reps = steps
        while True:
            t = time.perf_counter()
            call(reps)
            t = time.perf_counter() - t
            if t >= min_trial or reps >= 1 << 26:
                break
            reps = max(reps * 2, int(reps * min_trial * 1.2 / max(t, 1e-9)))
        t_best = t
        for _ in range(trials - 1):
            t = time.perf_counter()
            call(reps)
            t_best = min(t_best, time.perf_counter() - t)
        return t_best / reps, reps

    step_time, step_reps = best(lambda r: step(sa, wa, ya, r))
    peak = machine_peak()
    rows = []
    for n, k in enumerate(fg.kernels):
        if n not in singles:
            continue
        fn = loop_t(loaded.addresses[loops[n]])
        t, reps = best(lambda r, fn=fn: fn(sa, wa, ya, r))
        fl, by = kernel_flops(g, k), _kernel_bytes(g, k)
        level = _level_for(peak, by)
        ai = fl / by if by else None
        attainable = min(peak["gflops"], ai * level["gbps"]) if ai is not None else peak["gflops"]
        gflops = fl / t / 1e9 if t > 0 else 0.0
        rows.append({"kernel": k.name, "index": n, "kind": k.kind, "scope": k.scope or "",
                     "ops": len(k.members), "seconds": t, "repetitions": reps,
                     "share": t / step_time if step_time else 0.0,
                     "flops": fl, "bytes": by, "intensity": ai, "level": level["name"],
                     "gflops": gflops, "peak_fraction": gflops / peak["gflops"],
                     "roof_fraction": gflops / attainable if attainable else 0.0,
                     "bound": "compute" if ai is None or ai * level["gbps"] >= peak["gflops"]
                     else "memory"})
    return ProfileReport({"model": str(model.name), "entry": entry, "batch_size": session.batch_size,
                          "nthreads": 1, "steps": steps, "trials": trials,
                          "step_seconds": step_time, "step_repetitions": step_reps, "step_flops": graph_stats(g)["flops"],
                          "machine": peak, "kernels": rows})


class ProfileReport:
    """Per-kernel times of one entry: `str()` is the roofline table, `to_dict()` the data."""

    def __init__(self, data: dict):
        self.data = data

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.data))

    def to_json(self, indent=1) -> str:
        return json.dumps(self.data, indent=indent, default=str)

    def rows(self, sort="time"):
        rows = list(self.data["kernels"])
        if sort == "time":
            rows.sort(key=lambda r: -r["seconds"])
        return rows

    def render(self, sort="time", top=None) -> str:
        d, m = self.data, self.data["machine"]
        ksum = sum(r["seconds"] for r in d["kernels"])
        st = d["step_seconds"]
        bw = ", ".join(f"{lv['name']} {lv['gbps']:.0f}" for lv in m["levels"])
        lines = [
            f"profile: model {d['model']!r} {d['entry']}, batch {d['batch_size']}, 1 thread; "
            f"each kernel called alone in a native loop of at least {d['steps']} repetitions "
            f"(more for short kernels), best of {d['trials']}; data warm in cache",
            f"machine: {m['cpu']}, peak {m['gflops']:.1f} GFLOP/s per core "
            f"({m['gflops_source']}); read bandwidth GB/s: {bw} ({m['gbps_source']})",
            f"step: {st * 1e6:.2f} us, {_human(d['step_flops'], 'FLOP')}, "
            f"{d['step_flops'] / st / 1e9 if st else 0:.2f} GFLOP/s; kernels alone "
            f"{ksum * 1e6:.2f} us ({100 * ksum / st if st else 0:.0f}% of the step; the rest is "
            f"copies back into the state and call overhead)",
            "FLOP: ir/cost.py's estimate; bytes: each kernel input read once and output written "
            "once; level: the smallest cache holding those bytes; %roof: of min(peak, FLOP/B x "
            "that level's bandwidth)", ""]
        head = ("kernel", "kind", "layer", "ops", "time us", "step %", "FLOP", "bytes", "FLOP/B",
                "level", "GFLOP/s", "%peak", "%roof", "bound")
        table = [head]
        rows = self.rows(sort)
        shown = rows[:top] if top else rows
        for r in shown:
            table.append((r["kernel"], r["kind"], r["scope"] or "-", str(r["ops"]),
                          f"{r['seconds'] * 1e6:.3f}", f"{100 * r['share']:.1f}",
                          _human(r["flops"]), _human(r["bytes"]),
                          "-" if r["intensity"] is None else f"{r['intensity']:.2f}",
                          r["level"], f"{r['gflops']:.2f}", f"{100 * r['peak_fraction']:.1f}",
                          f"{100 * r['roof_fraction']:.1f}", r["bound"]))
        widths = [max(len(t[i]) for t in table) for i in range(len(head))]
        left = {0, 1, 2, 9, 13}
        for t in table:
            lines.append("  " + "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(t, widths))).rstrip())
        if top and len(rows) > top:
            rest = rows[top:]
            lines.append(f"  ... {len(rest)} more kernels, {sum(r['seconds'] for r in rest) * 1e6:.3f}"
                         f" us together")
        return "\n".join(lines)

    def __str__(self):
        return self.render()
