"""What a layer owns besides its own weights, found as Keras finds it.

* Sublayers: layers assigned as attributes (`self.dense = Dense(4)`), also inside
  lists, tuples and dicts (`self.blocks = [Dense(4), Dense(4)]`), in assignment
  order. Their weights follow the layer's own in `layer.weights`, as in Keras 3.
  The attributes are read when asked, so a list appended to later counts too.
* Seed generators: attributes with a `state` variable and a `seed` (Keras'
  `SeedGenerator`), whose state is model state, never a weight.
* The constructor's arguments (`auto_config`): when they are all plain values,
  they are the layer's config unless the class writes its own `get_config`
  (Keras' automatic config of custom layers and models).
"""
from __future__ import annotations

import inspect

_PLAIN = (str, int, float, bool, type(None))


def _layer_type():
    from .layer import Layer
    return Layer


def child_layers(obj) -> list:
    """The layers held by `obj`'s attributes (directly or in containers), in order."""
    Layer = _layer_type()
    out, seen = [], {id(obj)}

    def visit(value, depth=0):
        if isinstance(value, Layer):
            if id(value) not in seen:
                seen.add(id(value))
                out.append(value)
        elif isinstance(value, (list, tuple)) and depth < 4:
            for v in value:
                visit(v, depth + 1)
        elif isinstance(value, dict) and depth < 4:
            for v in value.values():
                visit(v, depth + 1)
    for name, value in vars(obj).items():
        if not name.startswith("__"):
            visit(value)
    return out


def attribute_children(obj) -> list[tuple[str, object]]:
    """(attribute name, layer or container of layers) pairs of `obj`, sorted by Keras'
    order of attribute names (the order of a .keras file's groups)."""
    Layer = _layer_type()

    def holds_layers(v, depth=0):
        if isinstance(v, Layer):
            return True
        if isinstance(v, (list, tuple)) and depth < 4:
            return any(holds_layers(i, depth + 1) for i in v)
        if isinstance(v, dict) and depth < 4:
            return any(holds_layers(i, depth + 1) for i in v.values())
        return False
    pairs = [(k, v) for k, v in vars(obj).items() if not k.startswith("__") and holds_layers(v)]
    return sorted(pairs, key=lambda kv: saving_order_key(kv[0]))


def saving_order_key(name: str) -> str:
    """Keras' saving order of attribute names: by name, private ones last."""
    return f"~{name}" if name.startswith("_") else name


def seed_state_variables(obj) -> list:
    """State variables of the SeedGenerator-like attributes of `obj`."""
    from ..variables import Variable
    out = []
    for value in vars(obj).values():
        state = getattr(value, "state", None) if hasattr(value, "seed") else None
        if isinstance(state, Variable) and not isinstance(value, _layer_type()):
            out.append(state)
    return out


def auto_config(cls, args, kwargs):
    """The constructor's arguments (defaults applied, `name` left to get_config) if they
    are all plain values, else None: what Keras' automatic get_config returns."""
    try:
        sig = inspect.signature(cls.__init__)
        bound = sig.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if any(p.kind == p.POSITIONAL_ONLY for p in params[1:]):
        return None          # cls(**config) could not pass them back
    if any(p.kind == p.VAR_POSITIONAL and bound.arguments.get(p.name) for p in params):
        return None
    bound.apply_defaults()
    config = dict(bound.arguments)
    config.pop(params[0].name, None)
    for p in params:
        if p.kind == p.VAR_KEYWORD:
            config.update(config.pop(p.name, {}) or {})
        elif p.kind == p.VAR_POSITIONAL:
            config.pop(p.name, None)
    config.pop("name", None)
    if not all(_plain(v) for v in config.values()):
        return None
    return config


def _plain(value) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def writes_own(obj, method: str, base) -> bool:
    """Whether `obj`'s class overrides `method` of `base`."""
    return getattr(type(obj), method) is not getattr(base, method)
