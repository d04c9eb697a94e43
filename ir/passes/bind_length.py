"""Bind a variable length to a run-time value: a graph traced at a capacity L that
runs correctly for any length T <= L read at run time.

The graph is traced with the variable axis of some inputs at size L, the data
padded to L. This pass follows that axis through the graph and accepts it only
where every position is computed from the same position of its operands
(elementwise ops, matmuls that do not contract it, reshapes and transposes that
keep it whole, gathers indexed by it, scans over it), so positions < T never see
padding. Then:

* a scan over the axis takes the int32 scalar input `steps` (= T) as its run-time
  trip count (ir/ops.py: `dynamic`), so it runs T steps, not L;
* a reduction over the axis (a loss or metric mean over time steps) becomes the
  same reduction of `select(position < T, x, 0)` (a max: of the lowest float), a
  mean divided by the count of the T positions. `select`, not a product, so that
  whatever the padding holds (inf, NaN) stays out;
* a contraction over it (matmul) has its operand masked the same way.

The gradients of the rewritten graph follow from the same rules (a select
passes no cotangent to the padding). Run again on the differentiated graph, the
pass masks the backward pass's sums over the axis too (a weight's gradient
contracts the steps), so an inf or NaN computed in the padding (log(0) of a
padded value) cannot reach a gradient as 0 * inf. Anything else touching the axis (slicing
or padding it, gathering along it, flattening it into a contracted axis, random
bits whose count depends on L, a state update holding it) raises
NotPositionWise: the caller compiles for the exact length instead.

The axis may be merged with others by a reshape (e.g. (batch, L, F) -> (batch*L, F)
for a Dense): a value's variable axis is (axis, inner), position p of that axis
being step (p // inner) % L.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import builder as F
from ..builder import Sym
from ..graph import Graph, TensorType

STEPS = "steps"
_ELEMENTWISE_LAYOUT = ("stop_gradient",)
_LOWEST = float(np.finfo(np.float32).min)
SCAN = (-1, 0)          # marks a scan over the variable axis (its results are read below)


class NotPositionWise(ValueError):
    """The variable axis reaches an op that mixes its positions."""


def bind_length(graph: Graph, variable: dict[str, int], length: int):
    """(new graph, {output name: (axis, inner)}) for `graph` whose input leaves named in
    `variable` have their axis `variable[name]` at capacity `length`. The new graph has
    an int32 scalar input leaf `steps`."""
    g = graph.copy()
    L = int(length)
    # A graph bound before (the forward graph, then its gradients): the same `steps`.
    found = [v for v in g.leaves("input") if g.nodes[v].name == STEPS]
    steps = Sym(g, found[0] if found else g.leaf("input", TensorType((), "int32"), STEPS))
    cache: dict = {}

    def steps_f():
        if "f" not in cache:
            cache["f"] = F.cast(steps, "float32")
        return cache["f"]

    def mask(shape, axis, inner):
        """float 0/1 of shape (1, .., shape[axis], .., 1): step of the position < T."""
        key = (len(shape), axis, shape[axis], inner)
        if key not in cache:
            pos = ((np.arange(shape[axis]) // inner) % L).astype(np.float32)
            bshape = tuple(shape[axis] if i == axis else 1 for i in range(len(shape)))
            cache[key] = F.less(Sym(g, g.constant(pos.reshape(bshape))), steps_f())
        return cache[key]

    def masked(x: Sym, info, fill=0.0) -> Sym:
        return F.select(mask(x.shape, *info), x, fill)

    var: dict[int, tuple[int, int]] = {}
    for v in graph.order():
        n = g.nodes[v]
        if n.is_leaf:
            if n.role == "input" and n.name in variable:
                axis = variable[n.name]
                if n.type.shape[axis] != L:
                    raise ValueError(f"bind_length: input {n.name!r} has {n.type.shape[axis]} "
                                     f"steps on axis {axis}, expected the capacity {L}")
                var[v] = (axis, 1)
            continue
        infos = [var.get(i) for i in n.inputs]
        if not any(infos):
            if n.op == "random_uniform" and any(d % L == 0 for d in n.type.shape):
                raise NotPositionWise("random bits over a variable axis depend on its capacity")
            continue
        out = _rule(g, v, n, infos, L, masked, steps, var)
        if out is not None:
            var[v] = out
    for leaf, val in g.updates.items():
        if val in var:
            raise NotPositionWise(f"state {g.nodes[leaf].name!r} is updated from values along "
                                  f"the variable axis")
    outputs = {name: var[v] for name, v in g.outputs.items() if v in var}
    return g, outputs


def _rule(g: Graph, v: int, n, infos, L, masked, steps, var):
    """The variable axis of value v (None if it has none), rewriting v when needed."""
    shape = n.type.shape
    op = n.op
    operands = [Sym(g, i) for i in n.inputs]
    if op in ("reduce_sum", "reduce_mean", "reduce_max"):
        axis, inner = infos[0]
        axes = n.params["axes"]
        if axis not in axes:
            return (axis if n.params["keepdims"] else axis - sum(a < axis for a in axes), inner)
        x = masked(operands[0], infos[0], _LOWEST if op == "reduce_max" else 0.0)
        keep = n.params["keepdims"]
        if op == "reduce_mean":
            size = int(np.prod([operands[0].shape[a] for a in axes]))
            count = F.cast(steps, "float32") * float(size // L)
            new = F.sum(x, axis=axes, keepdims=keep) / F.maximum(count, 1.0)
            g.replace_uses(v, new.id)
        else:
            g.replace_node(v, replace(n, inputs=(x.id,)))
        return None
    if op == "argmax":
        axis, inner = infos[0]
        if axis == n.params["axis"]:
            raise NotPositionWise("argmax over the variable axis")
        return (axis - (n.params["axis"] < axis), inner)
    if op == "matmul":
        return _matmul(g, v, n, infos, operands, masked)
    if op == "reshape":
        return _reshape(g.type(n.inputs[0]).shape, shape, *infos[0], L)
    if op == "transpose":
        axis, inner = infos[0]
        return (list(n.params["perm"]).index(axis), inner)
    if op == "broadcast_to":
        axis, inner = infos[0]
        return (axis + len(shape) - operands[0].ndim, inner)
    if op in ("slice", "pad"):
        axis, inner = infos[0]
        src = operands[0].shape[axis]
        if shape[axis] != src or (op == "slice" and n.params["start"][axis] != 0):
            raise NotPositionWise(f"{op} along the variable axis")
        return infos[0]
    if op == "gather":
        if infos[0] is not None:
            raise NotPositionWise("gather along the variable axis (e.g. a reversed sequence)")
        return infos[1]
    if op == "scan":
        return _scan(g, v, n, infos, steps, L)
    if op == "scan_result":
        node = g.nodes[n.inputs[0]]
        body = node.params["body"]
        return None if n.params["index"] < body.n_carry else (0, 1)
    if op == "scatter_add":        # an Embedding's gradient: padded positions add nothing
        idx, upd = infos
        if idx is None or upd is None or idx != upd:
            raise NotPositionWise("scatter_add of values along the variable axis")
        g.replace_node(v, replace(n, inputs=(n.inputs[0], masked(operands[1], upd).id)))
        return None
    if op == "random_uniform":
        raise NotPositionWise("random bits over the variable axis")
    if op in ("conv", "conv_weight_grad"):
        # a window mixes neighbouring positions (and the padding past the end)
        raise NotPositionWise("convolution of values along the variable axis")
    # elementwise (unary, binary, select, cast, stop_gradient): broadcasting keeps axes
    out = None
    for x, info in zip(operands, infos):
        if info is None:
            continue
        axis = info[0] + len(shape) - x.ndim
        if x.shape[info[0]] != shape[axis] or (out is not None and out != (axis, info[1])):
            raise NotPositionWise(f"{op} combines the variable axis with another axis")
        out = (axis, info[1])
    return out


def _matmul(g, v, n, infos, operands, masked):
    ta, tb = n.params["transpose_a"], n.params["transpose_b"]
    out = None
    new_inputs = list(n.inputs)
    for k, (x, info) in enumerate(zip(operands, infos)):
        if info is None:
            continue
        axis, inner = info
        transposed = ta if k == 0 else tb
        # operand 0: axis 0 is rows (m) unless transposed; operand 1: axis 1 is columns (n)
        keeps = (axis == (1 if transposed else 0)) if k == 0 else (axis == (0 if transposed else 1))
        if keeps:
            if out is not None:
                raise NotPositionWise("matmul of two operands along the variable axis")
            out = (k, inner)           # rows -> output axis 0, columns -> output axis 1
        elif infos[1 - k] is None:
            # contracted against an axis of size L that is not the variable one (a
            # flattened sequence into a Dense): its weights depend on the length
            raise NotPositionWise("matmul contracting the variable axis with a fixed one")
        else:                          # contracted: the padding must add nothing
            new_inputs[k] = masked(x, info).id
    if tuple(new_inputs) != n.inputs:
        g.replace_node(v, replace(n, inputs=tuple(new_inputs)))
    return out


def _reshape(src, dst, axis, inner, L):
    """Where the variable factor (stride s, L steps in the flat layout) lands in `dst`."""
    stride = inner * int(np.prod(src[axis + 1:], dtype=np.int64))
    span = stride * L
    for j in range(len(dst)):
        sj = int(np.prod(dst[j + 1:], dtype=np.int64))
        if stride % sj == 0 and (sj * dst[j]) % span == 0:
            return (j, stride // sj)
    raise NotPositionWise(f"reshape {tuple(src)} -> {tuple(dst)} splits the variable axis")


def _scan(g, v, n, infos, steps, L):
    body = n.params["body"]
    nk, nc = body.n_consts, body.n_carry
    if any(infos[:nk + nc]):
        raise NotPositionWise("a scan whose constants or initial carries hold the variable axis")
    xs = infos[nk + nc:nk + nc + body.n_xs]
    if any(info != (0, 1) for info in xs if info is not None) or n.params["length"] != L:
        raise NotPositionWise("a scan over another axis than the variable one")
    if not n.params["dynamic"]:
        g.replace_node(v, replace(n, inputs=(*n.inputs, steps.id), attrs=tuple(
            (k, True if k == "dynamic" else val) for k, val in n.attrs)))
    return SCAN
