"""compile / fit / evaluate / predict and the *_on_batch calls.

`compile()` records the optimizer, loss and metrics. The first call that needs
a given batch size traces the model into three entry graphs (train_step with
its gradients and optimizer update, eval_step, predict), and the backend
compiles them into one executable over the model's State. After that, a batch
is: copy in, one native call, read back loss and metric sums.

A batch shorter than the compiled batch size (the last one of an epoch) is
padded; a 0/1 mask input keeps the padding out of the loss, its gradient and
the metrics, so the numbers are those of the real samples (as in Keras).
"""
from __future__ import annotations

import time

import numpy as np

from ir import builder as F
from ir.passes import autodiff, optimizer_step, simplify
from ir.cost import flops, has_scan
from runtime.executable import make_executable
from runtime.threads import default_threads
from runtime.state import State
from ir.graph import TensorType
from . import losses as losses_mod, metrics as metrics_mod, optimizers as optimizers_mod
from .callbacks import CallbackList, History
from .data import adapt_inputs, adapt_targets, batches, check_cardinality
from .progbar import Progbar
from .tracing import Trace, tracing


class Trainer:
    def __init__(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._executables = {}
        self._state = None
        self._backend = "native"

    def _invalidate(self):
        self._executables = {}

    # -- compile ------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True, backend="native", nthreads=None,
                **kwargs):
        if kwargs:
            raise TypeError(f"compile() got unexpected arguments {sorted(kwargs)}")
        if backend not in ("native", "reference"):
            raise ValueError(f"Unknown backend {backend!r}; expected 'native' or 'reference'")
        self.optimizer = optimizers_mod.get(optimizer)
        self._loss_spec = loss
        self._loss_weights = loss_weights
        self._metric_spec = metrics
        self._backend = backend
        if nthreads is not None and (isinstance(nthreads, bool) or not isinstance(nthreads, int)
                                     or nthreads < 1):
            raise ValueError(f"`nthreads` must be a positive integer or None, received {nthreads!r}")
        self._nthreads = nthreads
        self.compiled = True
        self._executables = {}
        self._state = None

    @property
    def metrics_names(self):
        return list(getattr(self, "_log_kinds", {"loss": None}))

    def _require_compiled(self, what):
        if not self.compiled or self.optimizer is None:
            raise RuntimeError(f"You must call `compile()` before calling `{what}()`.")
        if self._loss_spec is None:
            raise ValueError(f"The model must be compiled with a loss before calling `{what}()`.")

    # -- state and executables ----------------------------------------------------------
    def _ensure_state(self):
        variables = list(self.weights)
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_weights)
            variables += self.optimizer.variables
        names = [v.path for v in variables]
        if self._state is not None and list(self._state.types) == names:
            return self._state
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Two model variables share the path(s) {dup}: give the layers "
                             f"distinct names")
        state = State([(v.path, TensorType(v.shape, v.dtype)) for v in variables])
        for v in variables:
            v.bind(state[v.path])
        self._state = state
        self._executables = {}
        return state

    def _per_output(self, spec, n, what):
        names = self.output_names
        if isinstance(spec, dict):
            unknown = set(spec) - set(names)
            if unknown:
                raise ValueError(f"Unknown output name(s) {sorted(unknown)} in `{what}`; "
                                 f"the model's outputs are {names}")
            return [spec.get(k) for k in names]
        if isinstance(spec, (list, tuple)) and n > 1 and (what != "metrics" or (
                spec and isinstance(spec[0], (list, tuple, dict, type(None))))):
            if len(spec) != n:
                raise ValueError(f"`{what}` has {len(spec)} entries for {n} outputs")
            return list(spec)
        return [spec] * n

    def _executable(self, batch_size, y_specs=None):
        self.build_for_data()
        state = self._ensure_state()
        key = (batch_size, tuple(y_specs) if y_specs else None)
        if key in self._executables:
            return self._executables[key]
        graphs = {"predict": self._trace_predict(batch_size)}
        if y_specs is not None:
            graphs["eval_step"] = self._trace_loss(batch_size, y_specs, training=False)
            graphs["train_step"] = self._trace_train(batch_size, y_specs)
        nthreads = getattr(self, "_nthreads", None) or default_threads(
            max(flops(g) for g in graphs.values()), any(has_scan(g) for g in graphs.values()))
        t0 = time.perf_counter()
        exe = make_executable(graphs, state, self._backend, nthreads)
        self.compile_time = time.perf_counter() - t0
        self._executables[key] = exe
        return exe

    def build_for_data(self):
        pass

    def _trainable_ids(self):
        return {id(w) for w in self.trainable_weights}

    def _new_trace(self):
        trace = Trace()
        trainable = self._trainable_ids()
        trace.is_trainable = lambda var: id(var) in trainable
        return trace

    def _trace_inputs(self, trace, batch_size):
        return [trace.input(f"x{i}", (batch_size, *shape), dtype)
                for i, (shape, dtype) in enumerate(self.input_specs)]

    def _trace_predict(self, batch_size):
        trace = self._new_trace()
        with tracing(trace):
            outs = self.forward(self._trace_inputs(trace, batch_size), training=False)
            for i, o in enumerate(outs):
                trace.graph.outputs[f"y{i}"] = o.id
        return simplify(trace.graph)

    def _trace_loss(self, batch_size, y_specs, training):
        trace = self._new_trace()
        with tracing(trace):
            xs = self._trace_inputs(trace, batch_size)
            mask = trace.input("mask", (batch_size,))
            trace.sample_mask = mask        # batch statistics skip the padding rows
            weight = trace.input("sample_weight", (batch_size,))
            outs = self.forward(xs, training=training)
            g = trace.graph
            if training:                    # layer state updates (moving means, seeds)
                for var, value in trace.updates.items():
                    g.updates[trace.variable(var).id] = value.id
            count = F.sum(mask)
            denom = F.maximum(count, 1.0)
            n = len(outs)
            loss_objs = [losses_mod.get(l) if l is not None else None
                         for l in self._per_output(self._loss_spec, n, "loss")]
            weights = self._per_output(self._loss_weights, n, "loss_weights") \
                if self._loss_weights is not None else [1.0] * n
            metric_specs = self._per_output(self._metric_spec or [], n, "metrics")
            total = None
            kinds = {"loss": ("mean", "loss")}
            for i, (y_pred, loss) in enumerate(zip(outs, loss_objs)):
                shape, dtype = y_specs[i]
                y_true = trace.input(f"y{i}", (batch_size, *shape), dtype, role="target")
                prefix = f"{self.output_names[i]}_" if n > 1 else ""
                if loss is not None:
                    values = _per_sample(loss.per_sample(y_true, y_pred))
                    batch_loss = F.sum(values * weight * mask) / denom
                    if n > 1:
                        g.outputs[f"loss/{prefix}loss"] = batch_loss.id
                        kinds[f"{prefix}loss"] = ("mean", f"loss/{prefix}loss")
                    term = batch_loss * float(weights[i] if weights[i] is not None else 1.0)
                    total = term if total is None else total + term
                for spec in _as_list(metric_specs[i]):
                    m = metrics_mod.get(spec, (None, *shape), y_pred.shape)
                    name = prefix + m.name
                    g.outputs[f"metric/{name}"] = F.sum(m.values(y_true, y_pred) * mask).id
                    kinds[name] = ("sum", f"metric/{name}")
            if total is None:
                raise ValueError("No loss to train on: every output's loss is None")
            reg = [w.regularizer(w) for w in self.trainable_weights if w.regularizer is not None]
            for r in reg:
                total = total + r
            g.outputs["loss"] = total.id
            g.outputs["count"] = count.id
            self._log_kinds = kinds
        return simplify(g) if not training else (g, trace)

    def _trace_train(self, batch_size, y_specs):
        g, trace = self._trace_loss(batch_size, y_specs, training=True)
        # The stable log-softmax rewrite must happen before differentiation.
        g = autodiff(simplify(g))
        by_path = {v.path: v for v in self.trainable_weights}
        optimizer = self.optimizer

        def rule(graph, pairs):
            trace.rebind(graph)
            with tracing(trace):
                triples = [(by_path[graph.nodes[p.id].name], p, gr) for p, gr in pairs]
                new = optimizer.emit_updates(trace, triples)
                out = {}
                for var, val in new.items():
                    if getattr(var, "constraint", None) is not None:
                        val = var.constraint(val)
                    out[trace.variable(var).id] = val
            return out
        return optimizer_step(g, rule)

    # -- inspection ------------------------------------------------------------------------
    def compiled_graph(self, entry="train_step", stage="fused", batch_size=32):
        """The compiled form of an entry point at one stage of the pipeline
        (see kcompile/inspect.py): an object with __str__, to_json() and to_dot()."""
        from .inspect import compiled_graph
        return compiled_graph(self, entry, stage, batch_size)

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        self._require_compiled("fit")
        batch_size = _check_batch_size(batch_size)
        xs = adapt_inputs(x, self, "fit")
        ys = adapt_targets(y, self, "fit")
        sw = _sample_weights(sample_weight, ys, class_weight)
        check_cardinality(xs, ys, sw)
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"`validation_split` must be in [0, 1), received {validation_split}")
            n = len(xs[0])
            split = int(n * (1.0 - validation_split))
            validation_data = ([a[split:] for a in xs], [a[split:] for a in ys],
                               sw[split:] if sw is not None else None)
            xs, ys = [a[:split] for a in xs], [a[:split] for a in ys]
            sw = sw[:split] if sw is not None else None
            val = validation_data
        elif validation_data is not None:
            val = _unpack_validation(validation_data, self)
        else:
            val = None
        n = len(xs[0])
        exe = self._executable(batch_size, _y_specs(ys))
        steps = -(-n // batch_size)
        verbose = 1 if verbose == "auto" else verbose
        self.history = History()
        cbs = CallbackList(callbacks, self, history=self.history,
                           params={"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        cbs.on_train_begin()
        rng = np.random.default_rng() if shuffle else None
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            bar = Progbar(steps, verbose=verbose)
            order = rng.permutation(n) if shuffle else None
            totals = _Totals(self._log_kinds)
            for step, (idx, real) in enumerate(batches(n, batch_size, order)):
                cbs.on_train_batch_begin(step)
                out = exe.run("train_step", _feeds(xs, ys, sw, idx, real, batch_size))
                logs = totals.add(out, real)
                cbs.on_train_batch_end(step, logs)
                bar.update(step + 1, logs)
                if self.stop_training:
                    break
            epoch_logs = totals.result()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(*val, validation_batch_size or batch_size)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            bar.finish(epoch_logs)
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        return self.history

    # -- evaluate / predict ------------------------------------------------------------------
    def _evaluate_arrays(self, xs, ys, sw, batch_size):
        exe = self._executable(batch_size, _y_specs(ys))
        totals = _Totals(self._log_kinds)
        for idx, real in batches(len(xs[0]), batch_size, None):
            totals.add(exe.run("eval_step", _feeds(xs, ys, sw, idx, real, batch_size)), real)
        return totals.result()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        self._require_compiled("evaluate")
        batch_size = _check_batch_size(batch_size)
        xs = adapt_inputs(x, self, "evaluate")
        ys = adapt_targets(y, self, "evaluate")
        sw = _sample_weights(sample_weight, ys, None)
        check_cardinality(xs, ys, sw)
        logs = self._evaluate_arrays(xs, ys, sw, batch_size)
        if verbose not in (0, "auto") or verbose == "auto":
            steps = -(-len(xs[0]) // batch_size)
            if verbose:
                bar = Progbar(steps, verbose=1 if verbose == "auto" else verbose)
                bar.update(steps, logs)
                bar.finish(logs)
        if return_dict:
            return logs
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        batch_size = _check_batch_size(batch_size)
        xs = adapt_inputs(x, self, "predict")
        n = len(xs[0])
        if n == 0:
            raise ValueError("predict() received no samples")
        batch_size = min(batch_size, n)
        exe = self._executable(batch_size)
        outs = None
        for idx, real in batches(n, batch_size, None):
            res = exe.run("predict", _feeds(xs, [], None, idx, real, batch_size))
            parts = [res[f"y{i}"][:real] for i in range(len(res))]
            outs = [[p] for p in parts] if outs is None else [o + [p] for o, p in zip(outs, parts)]
        result = [np.concatenate(o) for o in outs]
        return result[0] if len(result) == 1 else result

    # -- *_on_batch ----------------------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        xs, ys = adapt_inputs(x, self, "train_on_batch"), adapt_targets(y, self, "train_on_batch")
        sw = _sample_weights(sample_weight, ys, class_weight)
        check_cardinality(xs, ys, sw)
        n = len(xs[0])
        exe = self._executable(n, _y_specs(ys))
        totals = _Totals(self._log_kinds)
        totals.add(exe.run("train_step", _feeds(xs, ys, sw, np.arange(n), n, n)), n)
        return _logs_result(totals.result(), self.metrics_names, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        xs, ys = adapt_inputs(x, self, "test_on_batch"), adapt_targets(y, self, "test_on_batch")
        sw = _sample_weights(sample_weight, ys, None)
        check_cardinality(xs, ys, sw)
        n = len(xs[0])
        logs = self._evaluate_arrays(xs, ys, sw, n)
        return _logs_result(logs, self.metrics_names, return_dict)

    def predict_on_batch(self, x):
        xs = adapt_inputs(x, self, "predict_on_batch")
        return self.predict(xs if len(xs) > 1 else xs[0], batch_size=len(xs[0]), verbose=0)


class _Totals:
    """Keras' running means: losses weighted by the batch's sample count, metrics as sums."""

    def __init__(self, kinds: dict):
        self.kinds = kinds          # log name -> ("mean", output) | ("sum", output)
        self.sums = dict.fromkeys(kinds, 0.0)
        self.count = 0.0

    def add(self, out, real):
        c = float(out["count"])
        self.count += c
        for name, (kind, key) in self.kinds.items():
            self.sums[name] += float(out[key]) * c if kind == "mean" else float(out[key])
        return self.result()

    def result(self):
        c = max(self.count, 1.0)
        return {k: v / c for k, v in self.sums.items()}


def _logs_result(logs, names, return_dict):
    if return_dict:
        return logs
    values = [logs[k] for k in names]
    return values[0] if len(values) == 1 else values


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _per_sample(values):
    """A loss's values reduced to one per sample (Keras averages the other axes)."""
    if values.ndim > 1:
        return F.mean(values, axis=tuple(range(1, values.ndim)))
    if values.ndim == 0:
        raise ValueError("a loss function must return one value per sample, not a scalar")
    return values


def _check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, received {batch_size!r}")
    return int(batch_size)


def _y_specs(ys):
    return [(a.shape[1:], "int32" if a.dtype == np.int32 else "float32") for a in ys]


def _sample_weights(sample_weight, ys, class_weight):
    n = len(ys[0]) if ys else None
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float32)
        if sw.ndim != 1:
            sw = sw.reshape(len(sw), -1).mean(axis=1)
    if class_weight is not None and ys:
        y = ys[0]
        labels = y.argmax(axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
        cw = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
        sw = cw if sw is None else sw * cw
    return sw


def _feeds(xs, ys, sw, idx, real, batch_size):
    """The batch `idx` (padded by repeating row 0 up to batch_size) as entry inputs."""
    if real < batch_size:
        idx = np.concatenate([idx, np.zeros(batch_size - real, dtype=idx.dtype)])
    feeds = {f"x{i}": a[idx] for i, a in enumerate(xs)}
    feeds.update({f"y{i}": a[idx] for i, a in enumerate(ys)})
    mask = np.zeros(batch_size, np.float32)
    mask[:real] = 1.0
    feeds["mask"] = mask
    feeds["sample_weight"] = sw[idx] if sw is not None else np.ones(batch_size, np.float32)
    return feeds


def _unpack_validation(validation_data, model):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("`validation_data` must be a tuple (x_val, y_val) or "
                         "(x_val, y_val, val_sample_weights)")
    xv = adapt_inputs(validation_data[0], model, "fit (validation_data)")
    yv = adapt_targets(validation_data[1], model, "fit (validation_data)")
    swv = _sample_weights(validation_data[2], yv, None) if len(validation_data) == 3 else None
    check_cardinality(xv, yv, swv)
    return xv, yv, swv
