"""The reference interpreter: numpy, one op at a time, from each primitive's reference rule.

It is the ground truth of the numerical tests and the `backend='reference'` of
the Keras API. `float64=True` evaluates float32 values in double precision
(for finite-difference gradient checks).
"""
from __future__ import annotations

import numpy as np

from .graph import Graph
from .ops import get_op


def interpret(graph: Graph, leaf_values: dict[str, np.ndarray], float64: bool = False):
    """Evaluate `graph`. Returns (outputs by name, new values of updated leaves by name)."""
    fdt = np.float64 if float64 else np.float32

    def as_type(arr, t):
        return np.asarray(arr, dtype=fdt if t.dtype == "float32" else np.int32)

    env: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):     # inf/nan propagate as IEEE says, like compiled code
        for vid in graph.order():
            node = graph.nodes[vid]
            if node.is_leaf:
                if node.role == "constant":
                    val = node.value
                else:
                    if node.name not in leaf_values:
                        raise KeyError(f"no value given for {node.role} {node.name!r}")
                    val = leaf_values[node.name]
                    if tuple(np.shape(val)) != node.type.shape:
                        raise ValueError(f"{node.role} {node.name!r}: expected shape "
                                         f"{node.type.shape}, got {np.shape(val)}")
            else:
                val = get_op(node.op).reference([env[i] for i in node.inputs], node.params)
                if node.op == "scan":       # a tuple of results, read by scan_result
                    env[vid] = val
                    continue
            env[vid] = as_type(val, node.type)
    outputs = {k: env[v] for k, v in graph.outputs.items()}
    updates = {graph.nodes[leaf].name: env[v] for leaf, v in graph.updates.items()}
    return outputs, updates
