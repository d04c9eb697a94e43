"""EinsumDense: a dense layer whose product with its kernel is an einsum equation
(Keras 3's arguments, kernel and bias shapes, and equation forms)."""
from __future__ import annotations

import math
import re

import numpy as np

from .. import activations, constraints, initializers, regularizers
from ..ops import numpy as knp
from .layer import Layer


def analyze_equation(equation, bias_axes, input_shape, output_shape):
    """(kernel shape, bias shape or None, full output shape, kernel input axes, kernel
    output axes) of an EinsumDense, as Keras works them out. `equation` is
    "X,Y->Z", "...X,Y->...Z" or "X...,Y->Z..."; output_shape gives the output's
    non-batch dims (None: taken from the input)."""
    eq = equation.replace("...", "0") if isinstance(equation, str) else ""
    forms = [("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$", False),
             ("0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$", True),
             ("([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$", False)]
    for pattern, left_elided in forms:
        m = re.match(pattern, eq)
        if m:
            return _analyze(*m.groups(), bias_axes, list(input_shape), output_shape,
                            left_elided)
    raise ValueError(f"Invalid einsum equation '{equation}'. Equations must be in the form "
                     f"[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]....")


def _analyze(input_spec, weight_spec, output_spec, bias_axes, input_shape, output_shape,
             left_elided):
    elided = len(input_shape) - len(input_spec)
    out = [input_shape[0], *([output_shape] if isinstance(output_shape, int) else output_shape)]
    if elided > 0 and left_elided:
        for i in range(1, elided):
            out.insert(1, input_shape[i])
    elif elided > 0:
        out += input_shape[len(input_shape) - elided:]
    if left_elided:
        in_pos = {c: i + elided - len(input_shape) for i, c in enumerate(input_spec)}
        out_pos = {c: i + elided for i, c in enumerate(output_spec)}
    else:
        in_pos = {c: i for i, c in enumerate(input_spec)}
        out_pos = {c: i for i, c in enumerate(output_spec)}
    for c in input_spec:
        given = out[out_pos[c]] if c in out_pos else None
        if given is not None and given != input_shape[in_pos[c]]:
            raise ValueError(f"Input shape and output shape do not match at shared dimension "
                             f"'{c}'. Input shape is {input_shape[in_pos[c]]}, and output "
                             f"shape is {out[out_pos[c]]}.")
    for c in output_spec:
        if c not in input_spec and c not in weight_spec:
            raise ValueError(f"Dimension '{c}' was specified in the output '{output_spec}' but "
                             f"has no corresponding dim in the input spec '{input_spec}' or "
                             f"weight spec '{output_spec}'")
    kernel, in_axes, out_axes = [], [], []
    for i, c in enumerate(weight_spec):
        if c in out_pos:
            kernel.append(out[out_pos[c]])
            out_axes.append(i)
        elif c in in_pos:
            kernel.append(input_shape[in_pos[c]])
            in_axes.append(i)
        else:
            raise ValueError(f"Weight dimension '{c}' did not have a match in either the input "
                             f"spec '{input_spec}' or the output spec '{output_spec}'. For this "
                             f"layer, the weight must be fully specified.")
    # Output dims left None are the input's
    for c, i in out_pos.items():
        if out[i] is None and c in in_pos:
            out[i] = input_shape[in_pos[c]]
    bias = None
    if bias_axes is not None:
        lead = elided if left_elided else 0
        sizes = {c: out[i + lead] for i, c in enumerate(output_spec)}
        for c in bias_axes:
            if c not in output_spec:
                raise ValueError(f"Bias dimension '{c}' was requested, but is not part of the "
                                 f"output spec '{output_spec}'")
        first = min(output_spec.find(c) for c in bias_axes)
        bias = [sizes[c] if c in bias_axes else 1 for c in output_spec[first:]]
        if not left_elided:
            bias += [1] * max(elided, 0)
    return kernel, bias, out, in_axes, out_axes


def explicit_equation(equation, ndim):
    """The equation with its "..." replaced by letters it does not use, one per input
    axis the ellipsis stands for."""
    if "..." not in equation:
        return equation
    named = len(equation.split(",")[0].replace("...", ""))
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation][:ndim - named]
    return equation.replace("...", "".join(free))


class EinsumDense(Layer):
    """y = activation(einsum(equation, x, kernel) + bias), the kernel's shape worked out
    from the equation, the input shape and `output_shape` as Keras does; `bias_axes`
    names the output axes the bias spans."""

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, lora_rank=None, lora_alpha=None, **kwargs):
        kwargs.pop("quantization_config", None)      # Keras writes None here
        kwargs.pop("gptq_unpacked_column_size", None)
        super().__init__(**kwargs)
        if lora_rank:
            raise NotImplementedError(f"EinsumDense {self.name!r}: LoRA (lora_rank="
                                      f"{lora_rank}) is not supported")
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) \
            else tuple(output_shape)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.full_output_shape = None

    def build(self, input_shape):
        kernel_shape, bias_shape, out, in_axes, out_axes = analyze_equation(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape)
        if None in kernel_shape or (bias_shape is not None and None in bias_shape):
            raise ValueError(f"EinsumDense {self.name!r}: the kernel shape {tuple(kernel_shape)} "
                             f"(bias {bias_shape}) has unknown dimensions: give them in "
                             f"`output_shape` or in the input shape {tuple(input_shape)}")
        self.full_output_shape = tuple(out)
        self.kernel = self.add_weight(tuple(kernel_shape),
                                      _fan_aware(self.kernel_initializer, kernel_shape,
                                                 in_axes, out_axes),
                                      name="kernel", regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight(tuple(bias_shape), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if bias_shape is not None else None)
        self.built = True

    def call(self, inputs):
        y = knp.einsum(explicit_equation(self.equation, inputs.ndim), inputs, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(analyze_equation(self.equation, self.bias_axes, input_shape,
                                      self.partial_output_shape)[2])

    def get_config(self):
        return {**super().get_config(), "output_shape": self.partial_output_shape,
                "equation": self.equation, "activation": activations.serialize(self.activation),
                "bias_axes": self.bias_axes,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}


def _fan_aware(init, shape, in_axes, out_axes):
    """A variance-scaling initializer sees the einsum kernel's fans as Keras computes them
    (the product of its input axes, of its output axes): draw the matrix of those fans,
    whose entries are independent, and reshape it."""
    if not isinstance(init, initializers.VarianceScaling) or len(shape) <= 2:
        return init
    fan_in = math.prod(shape[a] for a in in_axes) if in_axes else 1
    fan_out = math.prod(shape[a] for a in out_axes) if out_axes else 1

    def draw(s, dtype="float32"):
        return np.reshape(init((fan_in, fan_out), dtype), s)
    return draw
