"""One module's text cut into partitions that are optimized and compiled apart.

LLVM optimizes and emits one module on one thread. The functions of a program's
module (the entries and the kernels they call, none inlined into another) are
independent for the optimizer, so the module can be cut into a few modules of
about equal size, compiled at the same time on several cores, and the objects
linked by the JIT (codegen/jit.py). A function called from another partition
gets external linkage with hidden visibility (nothing outside the program can
call it) and a declaration where it is called; constants go with the functions
that read them. Nothing else changes: each function is the same IR, optimized by
the same passes.

The module text is the one llvmlite.ir prints: a header, then top-level items,
each a `define ... {` ... `}` block or a one-line `declare` or global.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# A function's fixed cost, in lines (see Function.weight).
FUNCTION_WEIGHT = 20

_NAME = re.compile(r'@("(?:[^"\\]|\\.)*"|[-\w.$]+)')


@dataclass
class Function:
    name: str
    lines: list[str]         # `define ...` to `}`

    @property
    def weight(self) -> int:
        """What compiling it costs, roughly: its size, address arithmetic aside (an
        entry's calls to 500 kernels are mostly pointer offsets, quick to compile:
        3545 lines took the time of a 1064-line GEMM kernel), plus what any function
        costs (a 20-line kernel took 4-6 ms, a 540-line GEMM 60-70 ms)."""
        return FUNCTION_WEIGHT + sum(1 for line in self.lines if "= getelementptr" not in line)

    def definition(self) -> str:
        head = self.lines[0]
        if head.startswith("define internal "):    # callable from the other partitions
            head = "define hidden " + head[len("define internal "):]
        return "\n".join([head, *self.lines[1:]])

    def declaration(self) -> str:
        head = self.lines[0].removeprefix("define ").removeprefix("internal ").removesuffix("{")
        return "declare hidden " + head if self.lines[0].startswith("define internal ") \
            else "declare " + head


@dataclass
class Module:
    header: list[str]        # ModuleID, triple, data layout
    declarations: list[str]
    globals: dict[str, str]  # name -> its line
    functions: list[Function]
    other: list[str]         # anything else top-level (attribute groups, metadata)


def _name(line: str) -> str:
    m = _NAME.search(line)
    if m is None:
        raise ValueError(f"no symbol name in LLVM line {line[:80]!r}")
    return m.group(1).strip('"')


def parse(text: str) -> Module:
    header, decls, globs, funcs, other = [], [], {}, [], []
    current = None
    for line in text.splitlines():
        if current is not None:
            current.append(line)
            if line == "}":
                funcs.append(Function(_name(current[0]), current))
                current = None
        elif line.startswith("define "):
            current = [line]
        elif line.startswith("declare "):
            decls.append(line)
        elif line.startswith("@"):
            globs[_name(line)] = line
        elif line.startswith(("; ModuleID", "target ", "source_filename")):
            header.append(line)
        elif line.strip():
            other.append(line)
    if current is not None:
        raise ValueError(f"LLVM function {_name(current[0])!r} has no closing brace")
    return Module(header, decls, globs, funcs, other)


def balance(functions: list[Function], n: int) -> list[list[Function]]:
    """n groups of about equal weight (largest first, each to the lightest group), each
    in module order; empty groups dropped."""
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    order = sorted(range(len(functions)), key=lambda i: -functions[i].weight)
    for i in order:
        j = load.index(min(load))
        groups[j].append(i)
        load[j] += functions[i].weight
    return [[functions[i] for i in sorted(g)] for g in groups if g]


def split(text: str, n: int) -> list[str]:
    """The module as n (or fewer) module texts that together define the same functions.
    With n == 1 (or one function) the text itself."""
    mod = parse(text)
    if n <= 1 or len(mod.functions) <= 1:
        return [text]
    return [_module(mod, group) for group in balance(mod.functions, n)]


# What a function costs at O1 against O3, about (codegen/cold.py's products: 0.5-0.9).
COLD_COST = 0.6


@dataclass
class Part:
    text: str
    cold: bool          # compiled with the cheaper pipeline (codegen/cold.py)
    cost: float         # its functions' weights, cold ones scaled by COLD_COST


def split_cold(text: str, n: int, cold: frozenset | set = frozenset(),
               skip: frozenset | set = frozenset()) -> list[Part]:
    """The module as partitions, the functions named in `cold` apart from the others
    (each partition is compiled by one pipeline): about n in all, shared between the
    two kinds by their cost, at least one each kind present; the text itself when
    nothing is cold or skipped and n == 1. Functions named in `skip` (compiled apart)
    are only declared where used."""
    mod = parse(text)
    cold_fns = [f for f in mod.functions if f.name in cold and f.name not in skip]
    hot_fns = [f for f in mod.functions if f.name not in cold and f.name not in skip]
    if not cold_fns and not skip and (n <= 1 or len(hot_fns) <= 1):
        return [Part(text, False, sum(f.weight for f in hot_fns))]
    hot_cost = sum(f.weight for f in hot_fns)
    cold_cost = COLD_COST * sum(f.weight for f in cold_fns)
    n_cold = min(len(cold_fns), max(1, round(n * cold_cost / (hot_cost + cold_cost)))) \
        if cold_fns else 0
    n_hot = max(1, n - n_cold) if hot_fns else 0
    parts = [Part(_module(mod, g), False, sum(f.weight for f in g))
             for g in balance(hot_fns, n_hot)] if hot_fns else []
    parts += [Part(_module(mod, g), True, COLD_COST * sum(f.weight for f in g))
              for g in balance(cold_fns, n_cold)] if cold_fns else []
    return parts


def names(text: str) -> list[str]:
    """The global names (@...) text refers to, in order."""
    return [m.group(1).strip('"') for m in _NAME.finditer(text)]


def _module(mod: Module, functions: list[Function]) -> str:
    """A module defining `functions` and declaring what they use of the others."""
    inside = {f.name for f in functions}
    body = "\n\n".join(f.definition() for f in functions)
    used = set(names(body))
    lines = [*mod.header, ""]
    lines += [g for name, g in mod.globals.items() if name in used]
    lines += [d for d in mod.declarations if _name(d) in used]
    lines += [f.declaration() for f in mod.functions if f.name not in inside and f.name in used]
    lines += ["", body, "", *mod.other]
    return "\n".join(lines) + "\n"
