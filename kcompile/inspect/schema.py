"""The JSON schema of a document (documented in docs/inspect-json.md)."""
from __future__ import annotations

from .stages import ENTRIES, FORMAT, GRAPH_STAGES, STAGES, VERSION


def _obj(props: dict, required=None, extra=False) -> dict:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required,
            "additionalProperties": extra}


_INT = {"type": "integer", "minimum": 0}
_SHAPE = {"type": "array", "items": _INT}
_DTYPE = {"enum": ["float32", "int32"]}
_KIND = {"type": "string", "minLength": 1}      # documented values; new kinds may appear

JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kcompile.dev/schemas/inspect-v1.json",
    "title": "kcompile inspect document, version 1",
    "$defs": {
        "value": _obj({
            "id": _INT, "name": {"type": "string"}, "op": {"type": "string"},
            "shape": _SHAPE, "dtype": _DTYPE, "inputs": {"type": "array", "items": _INT},
            "attrs": {"type": "object", "additionalProperties": {
                "anyOf": [{"$ref": "#/$defs/body"}, {"not": {"type": "object"}}]}},
            "scope": {"type": "string"},
            "role": {"enum": [None, "param", "input", "target", "state", "constant"]},
            "binding": {"type": ["string", "null"]}, "value": {}, "inline": {"type": "boolean"}}),
        "body": _obj({
            "graph": {"$ref": "#/$defs/graph"}, "n_consts": _INT, "n_carry": _INT,
            "n_xs": _INT, "n_ys": _INT, "key": {"type": "string"}},
            required=["graph"]),
        "graph": _obj({
            "values": {"type": "array", "items": {"$ref": "#/$defs/value"}},
            "outputs": {"type": "object", "additionalProperties": _INT},
            "updates": {"type": "array", "items": _obj({"leaf": _INT, "value": _INT})},
            "gradients": {"type": "object", "additionalProperties": _INT}}),
        "kernel": _obj({
            "name": {"type": "string"}, "index": _INT,
            "kind": _KIND, "shape": _SHAPE,
            "scope": {"type": "string"}, "members": {"type": "array", "items": _INT},
            "inputs": {"type": "array", "items": _INT}, "outputs": {"type": "array", "items": _INT},
            "flops": {"type": "number", "minimum": 0}, "bytes": _INT}),
        "buffer": _obj({
            "id": _INT, "name": {"type": "string"}, "shape": _SHAPE, "dtype": _DTYPE,
            "region": _KIND, "offset": _INT, "bytes": _INT,
            "start": {"type": ["integer", "null"], "minimum": -1},
            "end": {"type": ["integer", "null"], "minimum": -1},
            "what": {"type": "string"}, "scope": {"type": "string"},
            "kernel": {"type": ["string", "null"]},
            "readers": {"type": "array", "items": {"type": "string"}},
            "alias_of": {"type": ["integer", "null"]},
            "in_place": {"type": "boolean"}}),
        "memory": _obj({
            "arena_bytes": _INT, "peak_bytes": _INT, "peak_at": {"type": "integer", "minimum": -1},
            "state_bytes": _INT, "constants": _INT,
            "kernels": {"type": "array", "items": {"type": "string"}},
            "buffers": {"type": "array", "items": {"$ref": "#/$defs/buffer"}},
            "scratch": {"type": "array", "items": _obj({"kernel": {"type": "string"},
                                                        "offset": _INT, "bytes": _INT})},
            "copies": {"type": "array", "items": _obj({"from": _INT, "to": _INT, "bytes": _INT,
                                                       "leaf": {"type": "string"}})}}),
        "function": _obj({
            "kernel": {"type": ["string", "null"]}, "symbol": {"type": "string"},
            "kind": _KIND, "shape": _SHAPE,
            "scope": {"type": "string"}, "text": {"type": "string"}}),
        "target": _obj({"triple": {"type": "string"}, "cpu": {"type": "string"},
                        "features": {"type": "array", "items": {"type": "string"}}}),
        "stats": _obj({
            "values": _INT, "ops": _INT, "flops": {"type": "number", "minimum": 0},
            "kernels": _INT, "views": _INT, "max_ops_per_kernel": _INT, "arena_bytes": _INT},
            required=["values", "ops", "flops"]),
    },
    "type": "object",
    "properties": {
        "format": {"const": FORMAT}, "version": {"const": VERSION},
        "model": {"type": "string"}, "entry": {"enum": list(ENTRIES)},
        "stage": {"enum": list(STAGES)}, "batch_size": {"type": "integer", "minimum": 1},
        "nthreads": {"type": ["integer", "null"], "minimum": 1},
        "kernel": {"type": ["string", "null"]}, "optimized": {"type": "boolean"},
        "stats": {"$ref": "#/$defs/stats"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "graph": {"$ref": "#/$defs/graph"},
        "kernels": {"type": "array", "items": {"$ref": "#/$defs/kernel"}},
        "memory": {"$ref": "#/$defs/memory"},
        "functions": {"type": "array", "items": {"$ref": "#/$defs/function"}},
        "target": {"$ref": "#/$defs/target"},
    },
    "required": ["format", "version", "model", "entry", "stage", "batch_size", "nthreads",
                 "kernel", "optimized", "stats", "notes"],
    "additionalProperties": False,
    "allOf": [
        {"if": {"properties": {"stage": {"enum": list(GRAPH_STAGES)}}},
         "then": {"required": ["graph"]}},
        {"if": {"properties": {"stage": {"const": "fused"}}},
         "then": {"required": ["graph", "kernels"]}},
        {"if": {"properties": {"stage": {"const": "memory"}}},
         "then": {"required": ["memory"]}},
        {"if": {"properties": {"stage": {"enum": ["llvm", "asm"]}}},
         "then": {"required": ["functions", "target"]}},
    ],
}
