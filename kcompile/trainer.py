"""compile / fit / evaluate / predict and the *_on_batch calls.

`compile()` records the optimizer, loss and metrics. The first call that needs
a given batch size traces the model into three entry graphs (train_step with
its gradients and optimizer update, eval_step, predict), and the backend
compiles them into one executable over the model's State. After that, a batch
is: copy in, one native call, read back loss and metric sums.

A batch shorter than the compiled batch size (the last one of an epoch) is
padded; a 0/1 mask input keeps the padding out of the loss, its gradient and
the metrics, so the numbers are those of the real samples (as in Keras).

The loops follow Keras 3's: data becomes a source of batches (kcompile/data.py:
arrays, or a stream from a Dataset, generator or iterable, whose first batch sets
the compiled size), an EpochIterator applies `steps_per_epoch`/`steps`, and a
CallbackList (the user's callbacks, then History and the ProgbarLogger that draws
the progress bar) gets every hook; validation inside fit runs the test loop with
the same callbacks. Batch hooks that no callback overrides cost nothing.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from kcompile.ir import builder as F
from kcompile.runtime.executable import check_input_bounds
from kcompile.runtime.pipeline import Pipeline, Traced
from . import (batch_calls, distribute, losses as losses_mod, metrics as metrics_mod,
               optimizers as optimizers_mod)
from .callbacks import CallbackList, pythonify_logs
from .data import (ArrayBatch, ArraySource, EpochIterator, adapt_inputs, adapt_targets,
                   check_batch_size, check_cardinality, feeds, is_batch_stream, make_source,
                   sample_weights, split_arrays, unpack_x_y_sample_weight, y_specs)
from .tracing import Trace, tracing
from .variables import state_over
from .variable_length import padded_executable


class Trainer:
    def __init__(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._executables = {}
        self._pipelines = {}
        self._state = None
        self._backend = "native"
        from .random import SeedGenerator
        # Random ops given no seed in layer code (keras.random.normal(shape) in a
        # Sampling layer) draw from this generator: model state, advanced every step.
        self._unseeded_random = SeedGenerator(name=f"{self.name}_seed_generator")

    def _invalidate(self):
        """Drop the compiled programs (the model or its compile settings changed)."""
        self._executables = {}
        self._pipelines = {}

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
        self._weighted_metric_spec = weighted_metrics
        self._backend = backend
        if nthreads is not None and (isinstance(nthreads, bool) or not isinstance(nthreads, int)
                                     or nthreads < 1):
            raise ValueError(f"`nthreads` must be a positive integer or None, received {nthreads!r}")
        self._nthreads = nthreads
        self._metric_objects = {}       # (kind, output, position) -> Metric, made when traced
        self.compiled = True
        self._invalidate()
        self._state = None

    @property
    def metrics_names(self):
        return list(getattr(self, "_log_kinds", {"loss": None}))

    @property
    def metrics(self):
        """The compiled metrics (Metric objects), once a step was traced."""
        return list(getattr(self, "_metric_objects", {}).values())

    @property
    def metrics_variables(self):
        return [v for m in self.metrics for v in m.variables]

    def reset_metrics(self):
        """Every compiled metric back to its initial state (Keras: at each epoch's start)."""
        for m in self.metrics:
            m.reset_state()

    def _require_compiled(self, what):
        from .subclassed import check_overrides
        check_overrides(self, what)
        if not self.compiled or self.optimizer is None:
            raise RuntimeError(f"You must call `compile()` before calling `{what}()`.")
        # Without a compiled loss, the losses the layers add (add_loss) are the loss: the
        # trace tells (_trace_loss).

    # -- state and executables ----------------------------------------------------------
    def _ensure_state(self):
        from . import variables as variables_mod
        if self._state is not None and getattr(self, "_state_generation", None) == \
                variables_mod.generation():
            # No variable was made since this State was: the model has the same ones
            # (a layer walk per call cost 0.7 ms on a 3-layer MLP's predict_on_batch).
            for v, view in self._state_bindings:
                if v.value is not view:     # moved away by another model or an eager call
                    v.bind(view)
            return self._state
        state = self._make_state()
        self._state_generation = variables_mod.generation()
        return state

    def _make_state(self):
        from .random import seed_states
        # Every variable of the model: weights and random-number state (Dropout's seed,
        # SeedGenerators held by layers).
        variables = list(self.variables)
        variables += [v for v in seed_states(self) if all(v is not w for w in variables)]
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_weights)
            variables += self.optimizer.variables
        # The compiled metrics' variables: state the train and eval steps update.
        taken = {v.path for v in variables}
        for v in self.metrics_variables:
            if any(v is w for w in variables):
                continue
            base, k = v.path, 1
            while v.path in taken:        # two metrics of one name (one per output)
                v.path, k = f"{base}_{k}", k + 1
            taken.add(v.path)
            variables.append(v)
        if distribute.active() is not None:     # the gradient slots ranks allreduce
            variables += distribute.active().state_variables(self)
        names = [v.path for v in variables]
        if self._state is not None and list(self._state.types) == names:
            self._state_bindings = [(v, self._state[v.path]) for v in variables]
            for v, view in self._state_bindings:
                if v.value is not view:     # a variable another model or an eager call moved away
                    v.bind(view)
            return self._state
        state = state_over(variables, f"Model {self.name!r}")
        self._state = state
        self._state_bindings = [(v, state[v.path]) for v in variables]
        self._invalidate()
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

    def _pipeline(self, batch_size, y_specs=None):
        """(signature, compile pipeline) for a batch size and target specs: traced once
        and kept, so the executable and inspection share its stages. Without targets,
        any program of these input shapes serves (it has the predict entry)."""
        self.build_for_data()
        state = self._ensure_state()
        xshapes = tuple(shape for shape, _ in self._concrete_input_specs())
        key = (batch_size, xshapes, tuple(y_specs) if y_specs is not None else None)
        if key not in self._pipelines and y_specs is None:
            for other in [*self._executables, *self._pipelines]:
                if other[:2] == key[:2]:
                    return other, self._pipelines[other]
        if key not in self._pipelines:
            # train_step first: the kernels it shares with the other entries carry its names
            traced = self._trace_entries(batch_size, y_specs)
            if any(v.path not in state.types for v in self.metrics_variables):
                # The first trace made the metrics (and their variables): trace again
                # over a State that holds them.
                state = self._make_state()
                self._state_generation = None
                traced = self._trace_entries(batch_size, y_specs)
            if distribute.active() is not None:     # train_step split at the gradient
                traced = distribute.active().split(self, traced)
            self._pipelines[key] = Pipeline(traced, state, getattr(self, "_nthreads", None),
                                            self._backend)
        return key, self._pipelines[key]

    def _metric_object(self, key, spec, y_true_shape, y_pred_shape):
        """The Metric for a compile() entry, made once (its variables are model state)."""
        objects = self._metric_objects
        if key not in objects:
            m = metrics_mod.get(spec, y_true_shape, y_pred_shape)
            if any(m is o for o in objects.values()):
                # one instance given for several outputs: each output has its own state
                m = type(m).from_config(m.get_config())
            objects[key] = m
        return objects[key]

    def _trace_entries(self, batch_size, y_specs):
        traced = {}
        if y_specs is not None:
            traced["train_step"] = self._trace_train(batch_size, y_specs)
            traced["eval_step"] = Traced(self._trace_loss(batch_size, y_specs, training=False))
        traced["predict"] = Traced(self._trace_predict(batch_size))
        return traced

    def _executable(self, batch_size, y_specs=None):
        if getattr(self, "_length_binding", None) is None:
            # One step for every length of a variable axis where the graph allows it
            # (kcompile/variable_length.py); else one compile per concrete length.
            padded = padded_executable(self, batch_size, y_specs)
            if padded is not None:
                return padded
        key, pipeline = self._pipeline(batch_size, y_specs)
        if key not in self._executables:
            t0 = time.perf_counter()
            self._executables[key] = pipeline.executable()
            self.compile_time = time.perf_counter() - t0
        return self._executables[key]

    def build_for_data(self):
        pass

    def _trainable_ids(self):
        return {id(w) for w in self.trainable_weights}

    def _new_trace(self):
        trace = Trace()
        trainable = self._trainable_ids()
        trace.is_trainable = lambda var: id(var) in trainable
        trace.seed_generator = self._unseeded_random
        return trace

    def _concrete_input_specs(self):
        """Input specs with axes declared None sized from the last data seen."""
        seen = getattr(self, "_data_input_shapes", None)
        out = []
        for i, (shape, dtype) in enumerate(self.input_specs):
            if None in shape:
                if seen is None or i >= len(seen):
                    raise ValueError(f"input {i} has unknown axes {(None, *shape)}: call the "
                                     f"model on data first")
                shape = tuple(seen[i][j] if d is None else d for j, d in enumerate(shape))
            out.append((tuple(shape), dtype))
        return out

    def _trace_inputs(self, trace, batch_size):
        return [trace.input(f"x{i}", (batch_size, *shape), dtype)
                for i, (shape, dtype) in enumerate(self._concrete_input_specs())]

    def _trace_predict(self, batch_size):
        trace = self._new_trace()
        with tracing(trace):
            outs = self.forward(self._trace_inputs(trace, batch_size), training=False)
            for i, o in enumerate(outs):
                trace.graph.outputs[f"y{i}"] = o.id
            _add_updates(trace)         # as Keras: a variable assigned in call() changes
        return self._bind_length(trace.graph, "predict")

    def _bind_length(self, g, entry):
        """The graph with its variable length read at run time, while a capacity-L step
        is being compiled (kcompile/variable_length.py)."""
        binding = getattr(self, "_length_binding", None)
        return g if binding is None else binding.bind(g, entry)

    def _trace_loss(self, batch_size, y_specs, training):
        trace = self._new_trace()
        with tracing(trace):
            xs = self._trace_inputs(trace, batch_size)
            mask = trace.input("mask", (batch_size,))
            trace.sample_mask = mask        # batch statistics skip the padding rows
            weight = trace.input("sample_weight", (batch_size,))
            outs = self.forward(xs, training=training)
            g = trace.graph
            _add_updates(trace)             # moving means, seeds, variables assigned in call()
            count = F.sum(mask)
            denom = F.maximum(count, 1.0)
            n = len(outs)
            loss_objs = [losses_mod.get(l) if l is not None else None
                         for l in self._per_output(self._loss_spec, n, "loss")]
            weights = self._per_output(self._loss_weights, n, "loss_weights") \
                if self._loss_weights is not None else [1.0] * n
            metric_specs = self._per_output(self._metric_spec or [], n, "metrics")
            weighted_specs = self._per_output(getattr(self, "_weighted_metric_spec", None) or [], n,
                                              "metrics")
            total = None
            kinds = {"loss": ("mean", "loss")}
            for i, (y_pred, loss) in enumerate(zip(outs, loss_objs)):
                if i >= len(y_specs):       # no targets: trained on add_loss terms only
                    continue
                shape, dtype = y_specs[i]
                y_true = trace.input(f"y{i}", (batch_size, *shape), dtype, role="target")
                prefix = f"{self.output_names[i]}_" if n > 1 else ""
                # Entries that do not count (Keras: a mask on the output, e.g. padded
                # time steps after Embedding(mask_zero=True)): weight 0, and the mean
                # is over the entries that count.
                out_mask = trace.masks.get(y_pred.id)
                if loss is not None:
                    raw = loss.per_sample(y_true, y_pred)
                    valid = loss.valid_samples(y_true, y_pred) if hasattr(loss, "valid_samples") \
                        else None
                    if out_mask is not None and raw.shape[:out_mask.ndim] == out_mask.shape:
                        m_ = _expand_to(out_mask, raw)
                        valid = m_ if valid is None else valid * m_
                    if valid is None:
                        batch_loss = F.sum(_per_sample(raw) * weight * mask) / denom
                    else:   # as Keras: ignored entries count neither in the sum nor the mean
                        rows = _expand_to(mask, raw)
                        batch_loss = F.sum(raw * valid * rows * _expand_to(weight, raw)) / \
                            F.maximum(F.sum(valid * rows), 1.0)
                    if n > 1:
                        g.outputs[f"loss/{prefix}loss"] = batch_loss.id
                        kinds[f"{prefix}loss"] = ("mean", f"loss/{prefix}loss")
                    term = batch_loss * float(weights[i] if weights[i] is not None else 1.0)
                    total = term if total is None else total + term
                row_weight = mask if out_mask is None else _expand_to(mask, out_mask) * out_mask
                for kind, specs in (("metrics", metric_specs[i]), ("weighted", weighted_specs[i])):
                    for j, spec in enumerate(_as_list(specs)):
                        m = self._metric_object((kind, i, j), spec, (None, *shape), y_pred.shape)
                        name = prefix + m.name
                        if kind == "weighted" and name in kinds:
                            name = prefix + "weighted_" + m.name
                        # Keras' weighted_metrics use sample_weight; every metric skips
                        # the padding rows (and entries the output's mask drops).
                        sw = row_weight * _expand_to(weight, row_weight) if kind == "weighted" \
                            else row_weight
                        kinds.update(_trace_metric(trace, m, name, y_true, y_pred, sw))
            if total is None and not trace.losses:
                raise ValueError("The model must be compiled with a loss (or add losses in "
                                 "call() with `self.add_loss()`) before it is trained or "
                                 "evaluated: every output's loss is None")
            reg = [w.regularizer(w) for w in self.trainable_weights if w.regularizer is not None]
            reg += trace.losses          # activity regularizers and add_loss terms
            for r in reg:
                total = r if total is None else total + r
            _add_updates(trace)             # the metrics' state updates
            g.outputs["loss"] = total.id
            g.outputs["count"] = count.id
            self._log_kinds = kinds
        g = self._bind_length(g, "train_step" if training else "eval_step")
        return (g, trace) if training else g

    def _trace_train(self, batch_size, y_specs):
        """The training loss as traced, with the optimizer's update rule: the pipeline
        differentiates it and appends the rule (its grad and update stages)."""
        g, trace = self._trace_loss(batch_size, y_specs, training=True)
        by_path = {v.path: v for v in self.trainable_weights}

        def rule(graph, pairs):
            trace.rebind(graph)
            with tracing(trace):
                return self._optimizer_updates(
                    trace, [(by_path[graph.nodes[p.id].name], p, gr) for p, gr in pairs])
        # A variable length: the backward pass's sums over the steps skip the padding.
        binding = getattr(self, "_length_binding", None)
        return Traced(g, rule, None if binding is None else
                      (lambda updated: binding.bind(updated, "train_step")))

    def _optimizer_updates(self, trace, triples):
        """{leaf id: new value} of the optimizer's step on (variable, param, gradient)
        triples, constraints applied: the training step's update, and the separate
        apply_update entry of a data-parallel step (kcompile/distribute)."""
        out = {}
        for var, val in self.optimizer.emit_updates(trace, triples).items():
            if getattr(var, "constraint", None) is not None:
                val = var.constraint(val)
            out[trace.variable(var).id] = val
        return out

    # -- inspection ------------------------------------------------------------------------
    def compiled_graph(self, entry="train_step", stage="fused", batch_size=32):
        """The compiled form of an entry point at one stage of the pipeline
        (see kcompile/inspect/): an object with __str__, to_json() and to_dot()."""
        from .inspect import compiled_graph
        return compiled_graph(self, entry, stage, batch_size)

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        self._require_compiled("fit")
        _check_epochs(epochs, initial_epoch)
        verbose = _check_verbose(verbose)
        batch_size = check_batch_size(batch_size)
        val = None
        if validation_split and validation_data is None:
            if is_batch_stream(x):
                raise ValueError("Argument `validation_split` is only supported for tensors or "
                                 "NumPy arrays. Found incompatible type in the input: "
                                 f"{type(x)}")
            xs = adapt_inputs(x, self, "fit")
            ys = adapt_targets(y, self, "fit")
            sw = sample_weights(sample_weight, ys, class_weight)
            check_cardinality(xs, ys, sw)
            (xs, ys, sw), (xv, yv, swv) = split_arrays(xs, ys, sw, validation_split)
            train = ArraySource(xs, ys, sw, batch_size or 32, shuffle)
            val = ArraySource(xv, yv, swv, validation_batch_size or batch_size or 32)
        else:
            if validation_split and not 0 < validation_split < 1:
                raise ValueError(f"`validation_split` must be in [0, 1), received "
                                 f"{validation_split}")
            train = make_source(x, y, sample_weight, class_weight, batch_size, shuffle, self,
                                "fit", steps=steps_per_epoch)
            if validation_data is not None:
                val = self._validation_source(validation_data, validation_batch_size or batch_size,
                                              validation_steps)
        dp = distribute.active()
        if dp is not None:      # this rank's share; rank 0's weights; rank 0 prints
            train, val = dp.shard(train), dp.shard(val)
            verbose, callbacks = dp.verbose(verbose), dp.callbacks(callbacks)
            dp.start(self)
        iterator = EpochIterator(train, steps_per_epoch)
        runner = _runner(self, "train_step", train)
        if train.fixed_size:
            runner.prepare(train)            # compile before the callbacks start
        val_iterator = EpochIterator(val, validation_steps) if val is not None else None

        if isinstance(callbacks, CallbackList):
            cbs = callbacks
        else:
            cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                               verbose=verbose, epochs=epochs, steps=iterator.num_batches)
        self.stop_training = False
        self._initial_epoch = None
        cbs.on_train_begin()
        # A callback restoring interrupted training (BackupAndRestore) sets where to resume.
        initial_epoch = self._initial_epoch or initial_epoch
        training_logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()            # as Keras: each epoch's metrics start afresh
            cbs.on_epoch_begin(epoch)
            logs = {}
            totals = None
            # (batch hooks no callback overrides are not called: a step stays a native call)
            batch_begin, batch_logs = map(cbs.wants, ("on_train_batch_begin",
                                                      "on_train_batch_end"))
            for step, batch in iterator.epoch():
                if batch_begin:
                    cbs.on_train_batch_begin(step)
                out = runner.run(batch)
                if totals is None:
                    totals = _Totals(self._log_kinds)
                totals.add(out, batch.real)
                if batch_logs:
                    cbs.on_train_batch_end(step, totals.result())
                if self.stop_training:
                    break
            if totals is not None:
                logs = totals.result()
            if iterator.exhausted:
                # A generator used up by the previous epochs: nothing to train on.
                break
            epoch_logs = dict(logs)
            if val_iterator is not None and _should_eval(epoch, validation_freq):
                val_logs = self._test_loop(val_iterator, cbs, "fit (validation_data)", True)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if dp is not None:      # every rank stops at the same epoch
                self.stop_training = dp.agree(self.stop_training)
            if self.stop_training:
                break
        if epochs > 0:      # as Keras: with use_ema, the weights take their moving averages
            self.optimizer.finalize_variable_values(self.trainable_weights)
        cbs.on_train_end(training_logs)
        return self.history

    def _validation_source(self, validation_data, batch_size, steps):
        if isinstance(validation_data, (tuple, list)):
            if len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` must be a tuple (x_val, y_val) or "
                                 "(x_val, y_val, val_sample_weights)")
            xv, yv, swv = unpack_x_y_sample_weight(tuple(validation_data))
        else:
            xv, yv, swv = validation_data, None, None
        return make_source(xv, yv, swv, None, batch_size, False, self, "fit (validation_data)",
                           steps=steps)

    # -- evaluate / predict ------------------------------------------------------------------
    def _test_loop(self, iterator, cbs, where, in_fit=False):
        runner = _runner(self, "eval_step", iterator.source)
        if iterator.source.fixed_size and isinstance(runner, _Runner):
            runner.prepare(iterator.source)
        self.reset_metrics()
        cbs.on_test_begin()
        totals, logs = None, {}
        self.stop_evaluating = False
        batch_begin, batch_logs = map(cbs.wants, ("on_test_batch_begin", "on_test_batch_end"))
        for step, batch in iterator.epoch():
            if batch_begin:
                cbs.on_test_batch_begin(step)
            out = runner.run(batch)
            if totals is None:
                totals = _Totals(self._log_kinds)
            totals.add(out, batch.real)
            if batch_logs:
                cbs.on_test_batch_end(step, totals.result())
            if self.stop_evaluating:
                break
        if totals is None:
            if not in_fit:
                raise ValueError(f"{where}: the data yielded no batches")
            # A validation generator used up by an earlier epoch.
            warnings.warn(f"{where}: the validation data yielded no batches; this epoch has "
                          f"no validation results", stacklevel=3)
            cbs.on_test_end({})
            return {}
        logs = pythonify_logs(totals.result())
        cbs.on_test_end(logs)
        return logs

    def _evaluate_arrays(self, xs, ys, sw, batch_size):
        it = EpochIterator(ArraySource(xs, ys, sw, batch_size))
        return self._test_loop(it, CallbackList(), "evaluate")

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        self._require_compiled("evaluate")
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        verbose = _check_verbose(verbose)
        source = make_source(x, y, sample_weight, None, batch_size, False, self, "evaluate",
                             steps=steps)
        if distribute.active() is not None:
            dp = distribute.active()
            source = dp.shard(source)
            verbose, callbacks = dp.verbose(verbose), dp.callbacks(callbacks)
        iterator = EpochIterator(source, steps)
        if isinstance(callbacks, CallbackList):
            cbs = callbacks
        else:
            cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                               epochs=1, steps=iterator.num_batches)
        logs = self._test_loop(iterator, cbs, "evaluate")
        if return_dict:
            return logs
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        from .subclassed import check_overrides
        check_overrides(self, "predict")
        # One batch and nothing to show: predict_on_batch's fast path serves.
        one_batch = verbose == 0 and callbacks is None and steps is None and \
            type(x) is np.ndarray and x.ndim and len(x) <= (check_batch_size(batch_size) or 32)
        if one_batch:
            call = batch_calls.find(self, "predict", (x,))
            if call is not None:
                return _predictions(call.run((x,)))
            key = batch_calls.signature((x,))
        result = self._predict_loop(x, batch_size, verbose, steps, callbacks)
        if one_batch and len(self.input_specs) == 1:
            exe = self._executable(len(x))
            batch_calls.remember(self, "predict", key, exe, "predict", (x,), ("x0",))
        return result

    def _predict_loop(self, x, batch_size, verbose, steps, callbacks):
        verbose = _check_verbose(verbose)
        source = make_source(x, None, None, None, batch_size, False, self, "predict",
                             targets=False, steps=steps)
        if source.fixed_size:
            source.batch_size = min(source.batch_size, source.n)
            source.num_batches = -(-source.n // source.batch_size)
        dp = distribute.active()
        if dp is not None:      # batches dealt to the ranks, gathered back in order
            source = dp.shard(source, collective=False)
            verbose, callbacks = dp.verbose(verbose), dp.callbacks(callbacks)
        iterator = EpochIterator(source, steps)
        runner = _runner(self, "predict", source)
        if isinstance(callbacks, CallbackList):
            cbs = callbacks
        else:
            cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                               epochs=1, steps=iterator.num_batches)
        self.stop_predicting = False
        cbs.on_predict_begin()
        outs = None
        batch_begin, batch_end = map(cbs.wants, ("on_predict_batch_begin", "on_predict_batch_end"))
        names = None
        for step, batch in iterator.epoch():
            if batch_begin:
                cbs.on_predict_batch_begin(step)
            res = runner.run(batch)
            if outs is None:
                names = [f"y{i}" for i in range(len(res))]
                outs = [[] for _ in names]
            real = batch.real
            parts = [res[k] if len(res[k]) == real else res[k][:real] for k in names]
            for o, p in zip(outs, parts):
                o.append(p)
            if batch_end:
                cbs.on_predict_batch_end(step, {"outputs": parts[0] if len(parts) == 1 else parts})
            if self.stop_predicting:
                break
        cbs.on_predict_end()
        if dp is not None:      # every rank's batches, in the data's order
            outs = dp.gather(outs)
            if dp.predict_on == "chief" and not dp.is_chief:
                return None
        if outs is None:
            raise ValueError("predict() received no samples")
        result = [np.concatenate(o) for o in outs]
        return result[0] if len(result) == 1 else result

    # -- *_on_batch ----------------------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        if sample_weight is None and class_weight is None:
            call = batch_calls.find(self, "train", (x, y))
            if call is not None:
                return self._prepared_logs(call, (x, y), return_dict)
        self._require_compiled("train_on_batch")
        xs, ys = adapt_inputs(x, self, "train_on_batch"), adapt_targets(y, self, "train_on_batch")
        sw = sample_weights(sample_weight, ys, class_weight)
        check_cardinality(xs, ys, sw)
        n = len(xs[0])
        self.reset_metrics()                # the logs are this batch's
        if distribute.active() is not None:     # this rank's batch, gradients averaged
            source = ArraySource(xs, ys, sw, n)
            out = _runner(self, "train_step", source).run(next(source.iterator()))
        else:
            exe = self._executable(n, y_specs(ys))
            out = exe.run("train_step", feeds(xs, ys, sw, slice(0, n), n, n))
            if sample_weight is None and class_weight is None and len(xs) == len(ys) == 1:
                batch_calls.remember(self, "train", batch_calls.signature((x, y)), exe,
                                     "train_step", (x, y), ("x0", "y0"), self._log_plan())
        return self._batch_logs(out, n, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        if sample_weight is None:
            call = batch_calls.find(self, "test", (x, y))
            if call is not None:
                return self._prepared_logs(call, (x, y), return_dict)
        self._require_compiled("test_on_batch")
        xs, ys = adapt_inputs(x, self, "test_on_batch"), adapt_targets(y, self, "test_on_batch")
        sw = sample_weights(sample_weight, ys, None)
        check_cardinality(xs, ys, sw)
        n = len(xs[0])
        logs = self._evaluate_arrays(xs, ys, sw, n)
        if sample_weight is None and len(xs) == len(ys) == 1:
            exe = self._executable(n, y_specs(ys))
            batch_calls.remember(self, "test", batch_calls.signature((x, y)), exe, "eval_step",
                                 (x, y), ("x0", "y0"), self._log_plan())
        return _logs_result(logs, self.metrics_names, return_dict)

    def _log_plan(self):
        """How a prepared one-batch call makes its logs from the step's outputs: (name,
        output, whether a mean) per log, in metrics_names' order; None when a log is a
        metric's result computed in Python (those take _batch_logs)."""
        kinds = self._log_kinds
        if any(kind[0] not in ("mean", "state") for kind in kinds.values()):
            return None
        return [(name, kind[1], kind[0] == "mean") for name, kind in kinds.items()]

    def _prepared_logs(self, call, arrays, return_dict):
        """train_on_batch/test_on_batch through a prepared call: the metrics reset (the
        logs are this batch's), the step, and the logs as _batch_logs makes them."""
        if self._metric_objects:
            self.reset_metrics()
        out = call.run(arrays)
        if call.logs is None:
            return self._batch_logs(out, len(arrays[0]), return_dict)
        count = float(out["count"])
        values = [float(out[k]) * count / max(count, 1.0) if mean else
                  (_log_value(out[k]) if k in out else 0.0) for _, k, mean in call.logs]
        if return_dict:
            return {name: v for (name, _, _), v in zip(call.logs, values)}
        return values[0] if len(values) == 1 else values

    def _batch_logs(self, out, n, return_dict):
        """The logs of one batch's step outputs (the numbers fit reports for it)."""
        totals = _Totals(self._log_kinds)
        totals.add(out, n)
        return _logs_result(totals.result(), self.metrics_names, return_dict)

    def predict_on_batch(self, x):
        call = batch_calls.find(self, "predict", (x,))
        if call is not None:
            return _predictions(call.run((x,)))
        key = batch_calls.signature((x,))
        xs = adapt_inputs(x, self, "predict_on_batch")
        out = self._predict_loop(xs if len(xs) > 1 else xs[0], len(xs[0]), 0, None, None)
        if len(xs) == 1:
            exe = self._executable(len(xs[0]))
            batch_calls.remember(self, "predict", key, exe, "predict", (x,), ("x0",))
        return out


def _predictions(out):
    """predict's result from the predict entry's outputs: one array, or a list."""
    if len(out) == 1:
        return out["y0"]
    return [out[f"y{i}"] for i in range(len(out))]


def _runner(model, entry, source):
    """The runner of an entry: one process's, or a data-parallel rank's."""
    dp = distribute.active()
    return _Runner(model, entry, source) if dp is None else dp.runner(model, entry, source)


class _Runner:
    """Runs batches through one entry point, picking the executable: arrays use their
    batch size; a stream uses the size of its first batch, padding shorter batches (the
    mask keeps the padding out of the numbers), and a new size only for a longer one."""

    def __init__(self, model, entry, source):
        self.model, self.entry = model, entry
        self.targets = entry != "predict"
        self.size = source.batch_size if source.fixed_size else None
        self._key = self._exe = self._table = None
        self._seen = self._specs = self._size = None
        self._step = None           # batch_calls.LoopStep of (executable, source), if any
        self._step_for = (None, None)

    def prepare(self, source):
        exe = self._get(source.y_specs)
        g = getattr(exe, "graphs", {}).get(self.entry)
        if g is not None and g.input_bounds and isinstance(source, ArraySource):
            # Ids and labels checked on the whole arrays once, so an error gives the
            # position in the data passed (each step checks its batch again).
            arrays = {f"x{i}": a for i, a in enumerate(source.xs)}
            arrays.update({f"y{i}": a for i, a in enumerate(source.ys)})
            check_input_bounds(g, arrays)

    def _get(self, specs):
        specs = specs if self.targets else None
        seen = getattr(self.model, "_data_input_shapes", None)
        if (seen is self._seen and specs is self._specs and self.size == self._size
                and self._table is self.model._executables):
            return self._exe            # the same batch as the last step's: nothing to ask
        self._seen, self._specs, self._size = seen, specs, self.size
        shapes = tuple(map(tuple, seen or ()))
        key = (self.size, shapes, tuple(specs) if specs is not None else None)
        # Ask the model again only when the batch shape changed or it dropped its
        # executables (recompiled): no per-step Python beyond this check.
        if key != self._key or self._table is not self.model._executables:
            self._exe = self.model._executable(self.size, specs)
            self._key = key
            self._table = self.model._executables
        return self._exe

    def run(self, batch):
        if self.size is None or batch.real > self.size:
            self.size = batch.real
        exe = self._get(batch.y_specs if self.targets else None)
        if type(batch) is ArrayBatch and batch.real == self.size:
            # a whole batch of rows of in-memory arrays: read in place or gathered
            if self._step_for[0] is not exe or self._step_for[1] is not batch.source:
                self._step_for = (exe, batch.source)
                self._step = batch_calls.LoopStep.make(exe, self.entry, batch.source,
                                                       self.size, self.targets)
            if self._step is not None:
                return self._step.run(batch.idx)
        return exe.run(self.entry, batch.feeds(self.size, self.targets))


class _Totals:
    """Keras' running means: losses weighted by the batch's sample count, metrics as
    sums over samples, weighted metrics as sums over their sample weights."""

    def __init__(self, kinds: dict):
        # name -> ("mean", out): a loss, averaged here over the batches;
        # ("state", out): a metric's result, computed in the step from its variables;
        # ("eager", metric, key): a metric's result computed here from its variables
        self.kinds = kinds
        self.means = [k for k, kind in kinds.items() if kind[0] == "mean"]
        self.sums = dict.fromkeys(self.means, 0.0)
        self.last = {}
        self.count = 0.0

    def add(self, out, real):
        c = float(out["count"])
        self.count += c
        for name in self.means:
            self.sums[name] += float(out[self.kinds[name][1]]) * c
        self.last = out

    def result(self):
        c = max(self.count, 1.0)
        logs = {}
        for name, (kind, *rest) in self.kinds.items():
            if kind == "mean":
                logs[name] = self.sums[name] / c
            elif kind == "state":
                logs[name] = _log_value(self.last[rest[0]]) if rest[0] in self.last else 0.0
            else:
                metric, key = rest
                value = metric.result()
                logs[name] = _log_value(value[key] if key is not None else value)
        return logs


def _log_value(value):
    """A scalar result as a float; a vector (per threshold, per class) as an array."""
    arr = np.array(value, dtype=np.float32)
    return float(arr) if arr.ndim == 0 else arr


def _trace_metric(trace, metric, name, y_true, y_pred, sample_weight) -> dict:
    """Trace `metric.update_state` into the step and its result as outputs; the log
    kinds of its entries. A result that is no graph value (read from a variable's
    `.value`, or branching on values) is computed after the step instead."""
    from kcompile.ir.builder import Sym
    trace.call_depth += 1           # as in a layer's call: constant assigns are updates too
    try:
        metric.update_state(y_true, y_pred, sample_weight=sample_weight)
    finally:
        trace.call_depth -= 1
    if getattr(metric, "_eager_result", False):
        return {name: ("eager", metric, None)}
    result = metric.result()
    results = result if isinstance(result, dict) else {name: result}
    kinds = {}
    for key, value in results.items():
        if hasattr(value, "__sym__") and not isinstance(value, Sym):
            value = value.__sym__(trace.graph)         # a variable: its value after the step
        if not isinstance(value, Sym):
            kinds[key] = ("eager", metric, key if isinstance(result, dict) else None)
            continue
        trace.graph.outputs[f"metric/{key}"] = value.id
        kinds[key] = ("state", f"metric/{key}")
    return kinds


def _add_updates(trace):
    for var, value in trace.updates.items():
        trace.graph.updates[trace.variable(var).id] = value.id


def _logs_result(logs, names, return_dict):
    if return_dict:     # in metrics_names' order (Keras: the loss, then the metrics)
        return {**{k: logs[k] for k in names if k in logs}, **logs}
    values = [logs[k] for k in names]
    return values[0] if len(values) == 1 else values


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _expand_to(x, like):
    """x (batch, ...) with trailing axes of 1 added to broadcast against `like`."""
    return F.reshape(x, x.shape + (1,) * (like.ndim - x.ndim)) if like.ndim > x.ndim else x


def _per_sample(values):
    """A loss's values reduced to one per sample (Keras averages the other axes)."""
    if values.ndim > 1:
        return F.mean(values, axis=tuple(range(1, values.ndim)))
    if values.ndim == 0:
        raise ValueError("a loss function must return one value per sample, not a scalar")
    return values


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2, received {verbose!r}")
    return int(verbose)


def _check_epochs(epochs, initial_epoch):
    for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, received {value!r}")


def _should_eval(epoch, validation_freq):
    epoch = epoch + 1
    if isinstance(validation_freq, int):
        return epoch % validation_freq == 0
    if isinstance(validation_freq, (list, tuple, set, range)):
        return epoch in validation_freq
    raise ValueError("Expected `validation_freq` to be a list or int. "
                     f"Received: validation_freq={validation_freq} of the type "
                     f"{type(validation_freq)}.")
