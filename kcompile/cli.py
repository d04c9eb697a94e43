"""The `kcompile` command (also `python -m kcompile`).

    kcompile inspect MODEL [--entry E] [--stage S] [--format text|json|dot] [--kernel K]
                           [--optimized] [--batch N] [--threads N] [--out FILE]
    kcompile inspect --schema
    kcompile summary MODEL [--batch N] [--threads N]
    kcompile profile MODEL [--entry E] [--batch N] [--steps N] [--top N] [--json]
    kcompile bench [--workloads W1,W5] [--peers kcompile,numpy] [--steps N] [--seconds S] [--json FILE]
    kcompile export MODEL -o DIR [--batch N | --max-batch N] [--threads N]
                          [--cpu host|generic|NAME] [--weights-file]

MODEL is a saved model (`model.h5`) or `path/to/file.py:function`, a function of no
arguments returning a kcompile model (compiled or not; an uncompiled model has only
the `predict` entry). Exit status: 0 on success, 2 for a bad request (missing file,
unknown stage or entry, something that is not a model), 1 when the work itself fails.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import traceback

from .inspect import ENTRIES, STAGES, InspectError

SAVED_SUFFIXES = (".h5", ".hdf5", ".keras")
IMAGE_SUFFIXES = (".svg", ".png", ".pdf")


class UsageError(Exception):
    """A request the command cannot serve: reported on one line, exit status 2."""


# ======================================================================== models
def load_model(spec: str):
    """The model named by MODEL: `file.h5` (saved) or `path/to/file.py:function`."""
    from .inspect.session import _is_model
    path, func = _split_spec(spec)
    p = pathlib.Path(path)
    if p.suffix == ".py":
        if not p.is_file():
            raise UsageError(f"no such file: {path}" if not p.exists() else f"not a file: {path}")
        if not func:
            raise UsageError(f"{spec}: name the function that returns the model, as "
                             f"{path}:FUNCTION")
        module = _import_file(p)
        if not hasattr(module, func):
            defined = sorted(n for n, v in vars(module).items()
                             if callable(v) and not n.startswith("_")
                             and getattr(v, "__module__", None) == module.__name__)
            raise UsageError(f"{path} has no function {func!r}"
                             + (f"; it defines {', '.join(defined)}" if defined else ""))
        obj = getattr(module, func)
        if callable(obj) and not _is_model(obj):
            try:
                obj = obj()
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                raise UsageError(f"calling {p.name}:{func}() raised {type(e).__name__}: {e}") \
                    from None
        if not _is_model(obj):
            raise UsageError(f"{p.name}:{func} returned {_describe(obj)}, not a kcompile model "
                             f"(a Sequential or functional Model)")
        return obj
    if p.suffix.lower() in SAVED_SUFFIXES:
        if not p.exists():
            raise UsageError(f"no such file: {path}")
        loader = _saved_model_loader()
        if loader is None:
            raise UsageError(f"cannot load {path}: this kcompile has no saved-model loader "
                             f"(kcompile.models.load_model / kcompile.saving.load_model); "
                             f"use path/to/file.py:function instead")
        try:
            model = loader(str(p))
        except Exception as e:
            raise UsageError(f"could not load the saved model {path}: "
                             f"{type(e).__name__}: {e}") from None
        if not _is_model(model):
            raise UsageError(f"loading {path} gave {_describe(model)}, not a kcompile model")
        return model
    if not p.exists():
        raise UsageError(f"no such file: {path}")
    raise UsageError(f"{spec}: MODEL must be a saved model ({', '.join(SAVED_SUFFIXES)}) or "
                     f"path/to/file.py:function")


def _split_spec(spec: str):
    """'dir/file.py:make' -> ('dir/file.py', 'make'); anything else is a path."""
    path, sep, func = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return path, func
    return spec, None


def _describe(obj) -> str:
    if obj is None:
        return "None"
    return f"a {type(obj).__module__}.{type(obj).__name__}" \
        if type(obj).__module__ not in ("builtins",) else f"{type(obj).__name__} {obj!r:.40}"


def _import_file(path: pathlib.Path):
    name = "kcompile_user_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        traceback.print_exc(file=sys.stderr)
        raise UsageError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _saved_model_loader():
    import importlib
    for mod, attr in (("kcompile.saving", "load_model"), ("kcompile.models", "load_model")):
        try:
            fn = getattr(importlib.import_module(mod), attr, None)
        except ImportError:
            fn = None
        if callable(fn):
            return fn
    return None


# ======================================================================== inspect
def cmd_inspect(args) -> int:
    from .inspect import JSON_SCHEMA, compiled_graph
    import json
    if args.schema:
        _emit(json.dumps(JSON_SCHEMA, indent=1), args.out)
        return 0
    if not args.model:
        raise UsageError("the MODEL argument is required (a .h5 file or path/to/file.py:function)")
    fmt = args.format
    image = args.out and pathlib.Path(args.out).suffix.lower() in IMAGE_SUFFIXES
    if image:
        if fmt not in (None, "dot"):
            raise UsageError(f"--out {args.out} is an image: it is rendered from --format dot, "
                             f"not {fmt}")
        fmt = "dot"
    fmt = fmt or "text"
    if fmt == "dot" and args.stage in ("llvm", "asm"):
        raise UsageError(f"there is no DOT view of the {args.stage} stage; use --format text, "
                         f"or --stage fused for the kernel graph")
    if args.optimized and args.stage != "llvm":
        raise UsageError("--optimized applies to --stage llvm (asm is always optimized)")
    model = load_model(args.model)
    from .inspect.session import _is_compiled
    entry = args.entry or ("train_step" if _is_compiled(model) else "predict")
    view = compiled_graph(model, entry, args.stage, args.batch, kernel=args.kernel,
                          optimized=args.optimized, nthreads=args.threads)
    if fmt == "json":
        text = view.to_json()
    elif fmt == "dot":
        text = view.to_dot()
    else:
        text = str(view)
    if image:
        return _render_image(text, args.out)
    _emit(text, args.out)
    return 0


def _emit(text: str, out):
    if out:
        pathlib.Path(out).write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text + "\n")


def _render_image(dot_source: str, out: str) -> int:
    target = pathlib.Path(out)
    exe = shutil.which("dot")
    if exe is None:
        src = target.with_suffix(".dot")
        src.write_text(dot_source + "\n")
        print(f"kcompile inspect: Graphviz is not installed (no `dot` on PATH), so {out} was not "
              f"rendered; wrote the DOT source to {src} instead. Install Graphviz, then run: "
              f"dot -T{target.suffix[1:].lower()} {src} -o {out}", file=sys.stderr)
        return 1
    res = subprocess.run([exe, f"-T{target.suffix[1:].lower()}", "-o", str(target)],
                         input=dot_source, text=True, capture_output=True)
    if res.returncode != 0:
        print(f"kcompile inspect: dot failed ({res.returncode}): {res.stderr.strip()}",
              file=sys.stderr)
        return 1
    print(f"wrote {out} (rendered with {exe})", file=sys.stderr)
    return 0


# ======================================================================== summary
def cmd_summary(args) -> int:
    from .inspect import Session, graph_stats
    from .inspect.text import _bytes, _human
    model = load_model(args.model)
    lines = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(str(s)))
    session = Session(model, args.batch, args.threads)
    rows = [("entry", "ops", "kernels", "views", "ops/kernel", "largest kernel", "arena",
             "FLOP/step")]
    for entry in session.entries():
        fg = session.fused(entry)
        plan = session.plan(entry)
        code = [k for k in fg.kernels if k.kind != "view"]
        stats = graph_stats(fg.graph)
        big = max(code, key=lambda k: len(k.members), default=None)
        mean = sum(len(k.members) for k in code) / len(code) if code else 0.0
        rows.append((entry, str(stats["ops"]), str(len(code)), str(len(fg.kernels) - len(code)),
                     f"{mean:.1f}", f"{big.name} ({len(big.members)} ops)" if big else "-",
                     _bytes(plan.work_bytes), _human(stats["flops"], "FLOP")))
    nt = session.nthreads
    lines += ["", f"Compiled (batch {session.batch_size}, {nt} thread{'s' if nt > 1 else ''}, "
                  f"state {_bytes(session.state.buffer.nbytes)}):"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if not session.compiled:
        lines.append("  (not compiled: train_step and eval_step exist after "
                     "model.compile(optimizer=..., loss=...))")
    lines.append("  ops: after simplify; kernels: fused loop nests with code; views: reshapes "
                 "that alias their operand; arena: the work memory of one step")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# ======================================================================== profile
def cmd_profile(args) -> int:
    from .inspect import profile
    from .inspect.session import _is_compiled
    model = load_model(args.model)
    entry = args.entry or ("train_step" if _is_compiled(model) else "predict")
    report = profile(model, entry, args.batch, args.steps)
    sys.stdout.write((report.to_json() if args.json else report.render(top=args.top)) + "\n")
    return 0


# ======================================================================== bench
def benchmark_script() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parent.parent / "examples" / "benchmarks" / "run.py"


def cmd_export(args) -> int:
    """Write MODEL's predict as a standalone C library in DIR (kcompile/export.py)."""
    from .export import export_model
    model = load_model(args.model)
    try:
        export_model(model, args.out, batch_size=args.batch, max_batch_size=args.max_batch,
                     threads=args.threads, cpu=args.cpu, weights_file=args.weights_file)
    except ValueError as e:         # the model or the options cannot be exported
        raise UsageError(str(e)) from None
    return 0


def cmd_bench(args) -> int:
    script = benchmark_script()
    if not script.is_file():
        raise UsageError(f"the benchmark suite is part of the source checkout "
                         f"(examples/benchmarks/run.py); not found at {script}")
    cmd = [sys.executable, str(script)]
    for opt in ("workloads", "peers", "steps", "seconds", "json", "peer_python"):
        value = getattr(args, opt)
        if value is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(value)]
    print(f"running {' '.join(cmd[1:])}", file=sys.stderr)
    sys.stdout.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.returncode


# ======================================================================== parser
def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _non_negative_float(text):
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kcompile", description="Look at what kcompile makes of a Keras model: every "
        "compiler stage, a summary, a per-kernel profile, the benchmarks.",
        epilog="MODEL: a saved model (.h5) or path/to/file.py:function (a function of no "
        "arguments returning a model).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    model_help = "a saved model (.h5) or path/to/file.py:function"
    entry_help = "the entry point (default: train_step if the model is compiled, else predict)"
    ins = sub.add_parser("inspect", help="print one stage of the compilation of an entry point",
                         description="Print one stage of the compilation of an entry point. "
                         "Stages: trace (the graph as traced from the layers), grad (after "
                         "autodiff), update (with the optimizer step), optimized (after "
                         "simplify), fused (kernels and their ops), memory (the work arena), "
                         "llvm (LLVM IR per kernel), asm (host assembly per kernel).")
    ins.add_argument("model", nargs="?", metavar="MODEL", help=model_help)
    ins.add_argument("--entry", choices=ENTRIES, help=entry_help)
    ins.add_argument("--stage", choices=STAGES, default="fused", help="default: fused")
    ins.add_argument("--format", choices=("text", "json", "dot"),
                     help="text (jaxpr-like, the default), json (docs/inspect-json.md) or dot")
    ins.add_argument("--kernel", metavar="NAME",
                     help="only this kernel (k3, k3_matmul or train_step.k3_matmul); stages "
                     "fused, memory, llvm, asm")
    ins.add_argument("--optimized", action="store_true",
                     help="llvm: the IR after LLVM's optimization passes")
    ins.add_argument("--batch", type=_positive, default=32, help="batch size (default 32)")
    ins.add_argument("--threads", type=_positive,
                     help="compile for this many threads (default: as the trainer would)")
    ins.add_argument("--out", metavar="FILE",
                     help="write to FILE; .svg/.png/.pdf renders the DOT form with Graphviz")
    ins.add_argument("--schema", action="store_true",
                     help="print the JSON schema of --format json and exit")
    ins.set_defaults(func=cmd_inspect)

    s = sub.add_parser("summary", help="Keras' summary table plus compile facts",
                       description="Keras' summary() table, then per entry point: ops after "
                       "simplify, kernels, fused ops per kernel, work arena bytes, FLOPs per step.")
    s.add_argument("model", metavar="MODEL", help=model_help)
    s.add_argument("--batch", type=_positive, default=32, help="batch size (default 32)")
    s.add_argument("--threads", type=_positive, help="compile for this many threads")
    s.set_defaults(func=cmd_summary)

    pr = sub.add_parser("profile", help="per-kernel times of the compiled step (a roofline table)",
                        description="Run the compiled step and time each kernel on one thread: "
                        "time, share of the step, FLOPs, bytes, GFLOP/s and the fraction of "
                        "this machine's measured peak.")
    pr.add_argument("model", metavar="MODEL", help=model_help)
    pr.add_argument("--entry", choices=ENTRIES, help=entry_help)
    pr.add_argument("--batch", type=_positive, default=32, help="batch size (default 32)")
    pr.add_argument("--steps", type=_positive, default=100,
                    help="repetitions per timing (at least; short kernels get more)")
    pr.add_argument("--top", type=_positive, help="show only the N slowest kernels")
    pr.add_argument("--json", action="store_true", help="print the measurements as JSON")
    pr.set_defaults(func=cmd_profile)

    ex = sub.add_parser("export", help="write the model's predict as a C library "
                        "(libmodel.so, libmodel.a, model.h)", description=cmd_export.__doc__)
    ex.add_argument("model", metavar="MODEL", help="model.h5 or path/to/file.py:function")
    ex.add_argument("-o", "--out", required=True, metavar="DIR", help="the export directory")
    size = ex.add_mutually_exclusive_group()
    size.add_argument("--batch", type=_positive, help="a fixed batch size (default 1)")
    size.add_argument("--max-batch", type=_positive,
                      help="any batch from 1 to this (compiled for 1, 2, 4, ... and it)")
    ex.add_argument("--threads", type=_positive, default=1, help="threads per handle (default 1)")
    ex.add_argument("--cpu", default="host",
                    help="host (fastest here), generic (x86-64-v2: any recent x86-64) or a CPU "
                         "name such as x86-64-v3, skylake-avx512, znver3")
    ex.add_argument("--weights-file", action="store_true",
                    help="weights in model.weights beside the library, not embedded in it")
    ex.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="run the benchmark workloads (examples/benchmarks/run.py)",
                       description="Run the benchmark suite: each peer on each workload in its "
                       "own process, printed as tables (examples/benchmarks/run.py).")
    b.add_argument("--workloads", help="comma-separated, e.g. W1,W5 (default: all)")
    b.add_argument("--peers", help="comma-separated, e.g. kcompile,numpy (default: all)")
    b.add_argument("--steps", type=_positive, help="timed steps per peer, at least")
    b.add_argument("--seconds", type=_non_negative_float,
                   help="time each peer for at least this long (default 2)")
    b.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    b.add_argument("--peer-python", metavar="PYTHON",
                   help="the interpreter that runs the peers other than kcompile (PyTorch, "
                   "JAX, Keras 3, ONNX Runtime installed there; default: this one)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:             # --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (UsageError, InspectError) as e:
        sys.stdout.flush()
        print(f"kcompile {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        print(f"kcompile {args.command}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
