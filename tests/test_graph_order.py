"""Graph.order and Graph.copy (ir/graph.py) on a real training graph: the order is
networkx's lexicographical topological sort of the dag, and a copy has the same
edges and is edited independently of the original."""
from __future__ import annotations

import networkx as nx
import numpy as np

from kcompile import layers, models


def training_graph():
    m = models.Sequential([layers.Dense(8, activation="relu", input_shape=(5,)),
                           layers.BatchNormalization(), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy", backend="reference")
    x = np.ones((4, 5), np.float32)
    m.train_on_batch(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    (p,) = m._pipelines.values()
    return p.graph("train_step")


def test_order_is_the_lexicographical_topological_sort():
    g = training_graph()
    assert g.order() == list(nx.lexicographical_topological_sort(g.dag))
    position = {v: n for n, v in enumerate(g.order())}
    assert all(position[i] < position[v] for v, node in g.nodes.items() for i in node.inputs)


def test_a_copy_has_the_same_edges_and_is_edited_apart():
    g = training_graph()
    c = g.copy()
    assert sorted(c.dag.edges) == sorted(g.dag.edges) and list(c.dag) == list(g.dag)
    assert {v: sorted(c.dag.predecessors(v)) for v in c.dag} == \
        {v: sorted(g.dag.predecessors(v)) for v in g.dag}
    user = next(v for v, n in c.nodes.items() if n.inputs)
    operand = c.nodes[user].inputs[0]
    c.replace_uses(operand, c.constant(np.zeros(c.type(operand).shape, np.float32)))
    assert g.dag.has_edge(operand, user) and not c.dag.has_edge(operand, user)
    assert c.order() == list(nx.lexicographical_topological_sort(c.dag))
