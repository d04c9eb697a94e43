"""CompiledView: one inspected document and its forms (text, JSON, DOT)."""
from __future__ import annotations

import json

from .dot import render_dot
from .stages import FORMAT, VERSION, InspectError
from .text import render_text


class CompiledView:
    """One entry point at one stage: text (`str`), `to_json()`, `to_dot()`."""

    def __init__(self, doc: dict):
        self.doc = doc

    # -- identity ------------------------------------------------------------------
    @property
    def entry(self) -> str:
        return self.doc["entry"]

    @property
    def stage(self) -> str:
        return self.doc["stage"]

    @property
    def kernel_names(self) -> list[str]:
        d = self.doc
        if "kernels" in d:
            return [k["name"] for k in d["kernels"]]
        if "functions" in d:
            return [f["kernel"] for f in d["functions"] if f["kernel"]]
        if "memory" in d:
            return list(d["memory"]["kernels"])
        return []

    def __repr__(self):
        return (f"<CompiledView {self.doc['model']!r} {self.entry} @ {self.stage}, "
                f"batch {self.doc['batch_size']}>")

    # -- forms -----------------------------------------------------------------------
    def __str__(self):
        return render_text(self.doc)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.doc))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.doc, indent=indent, allow_nan=False)

    def to_dot(self) -> str:
        return render_dot(self.doc)

    @classmethod
    def from_json(cls, text) -> "CompiledView":
        doc = json.loads(text) if isinstance(text, (str, bytes)) else text
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InspectError(f"not a {FORMAT} document")
        if doc.get("version") != VERSION:
            raise InspectError(f"{FORMAT} version {doc.get('version')!r} is not supported "
                               f"(this kcompile reads version {VERSION})")
        return cls(doc)

    def _repr_pretty_(self, p, cycle):      # IPython
        p.text(str(self))
