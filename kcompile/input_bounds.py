"""Integer inputs checked against a bound before a step runs.

Token ids (Embedding) and sparse class labels (sparse categorical crossentropy)
index into a table or a one-hot row: a value outside [0, bound) would read
outside the table or train on a class that does not exist. The graph records
the bound on the model input the values come from (Graph.input_bounds) and the
executables reject such data with its value, position and the valid range
(runtime/executable.py: check_input_bounds).
"""
from __future__ import annotations

# Ops that move values without changing them: the ids are still the input's.
_LAYOUT_OPS = ("reshape", "transpose", "cast", "slice", "squeeze", "expand_dims")


def bound_input(sym, bound: int) -> None:
    """Require the model input `sym` is read from to hold integers in [0, bound)
    (nothing is recorded when `sym` is computed, not read from an input)."""
    g = sym.g
    node = g.nodes[sym.id]
    while not node.is_leaf and node.op in _LAYOUT_OPS:
        node = g.nodes[node.inputs[0]]
    if node.is_leaf and node.role in ("input", "target"):
        bounds = g.input_bounds
        bounds[node.name] = min(bounds.get(node.name, bound), bound)
