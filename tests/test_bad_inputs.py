"""Bad inputs raise the Python exception a Keras user expects, with a useful
message, before any compiled code runs; and nothing else happens: the process
survives, the model's weights and optimizer state are untouched, and the model
keeps working afterwards.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kcompile import layers, models, optimizers

ROOT = Path(__file__).resolve().parents[1]
N = 10
rng = np.random.default_rng(0)
X = rng.standard_normal((N, 4)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[np.arange(N) % 3]


@pytest.fixture(scope="module")
def model():
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    m.compile(optimizer=optimizers.SGD(0.1), loss="categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(X, Y, batch_size=N, epochs=1, verbose=0)     # compiled and used once
    return m


class survives:
    """`with survives(model, ExcType, match)`: the block raises ExcType (message matching),
    the weights and optimizer iterations are unchanged, and the model still works."""

    def __init__(self, model, exc, match=None):
        self.model, self.exc, self.match = model, exc, match

    def __enter__(self):
        m = self.model
        self.weights = m.get_weights() if m is not None else None
        self.iters = float(m.optimizer.iterations.numpy()) if m is not None and m.optimizer \
            else None
        self.raises = pytest.raises(self.exc, match=self.match)
        self.info = self.raises.__enter__()
        return self.info

    def __exit__(self, *exc_info):
        handled = self.raises.__exit__(*exc_info)
        m = self.model
        if m is not None:
            for a, b in zip(self.weights, m.get_weights()):
                np.testing.assert_array_equal(a, b)
            if self.iters is not None:
                assert float(m.optimizer.iterations.numpy()) == self.iters
            p = m.predict(X, batch_size=N, verbose=0)
            assert p.shape == (N, m.layers[-1].units) and np.all(np.isfinite(p))
            if m.compiled and m._loss_spec == "categorical_crossentropy":
                loss, acc = m.evaluate(X, Y, batch_size=N, verbose=0)
                assert np.isfinite(loss)
        return handled


def _shapes_in(msg, *shapes):
    for s in shapes:
        assert str(s) in msg, f"{s} not named in: {msg}"


# ------------------------------------------------------------------ wrong input shapes
@pytest.mark.parametrize("bad", [(N, 5), (N,), (N, 4, 1), (N, 2, 2)],
                         ids=["wrong-features", "rank1", "rank3", "rank3b"])
@pytest.mark.parametrize("call", ["fit", "predict", "evaluate", "train_on_batch",
                                  "test_on_batch", "predict_on_batch"])
def test_wrong_input_shape(model, call, bad):
    xb = np.zeros(bad, np.float32)
    args = {"fit": lambda: model.fit(xb, Y, verbose=0, batch_size=N),
            "predict": lambda: model.predict(xb, verbose=0),
            "evaluate": lambda: model.evaluate(xb, Y, verbose=0, batch_size=N),
            "train_on_batch": lambda: model.train_on_batch(xb, Y),
            "test_on_batch": lambda: model.test_on_batch(xb, Y),
            "predict_on_batch": lambda: model.predict_on_batch(xb)}[call]
    with survives(model, ValueError) as info:
        args()
    _shapes_in(str(info.value), (None, 4), bad)


def test_wrong_shape_single_sample_and_validation_data(model):
    with survives(model, ValueError) as info:
        model.predict(np.zeros(4, np.float32), verbose=0)      # one sample without batch axis
    _shapes_in(str(info.value), (None, 4), (4,))
    with survives(model, ValueError) as info:
        model.fit(X, Y, validation_data=(np.zeros((3, 5), np.float32), Y[:3]), verbose=0,
                  batch_size=N)
    _shapes_in(str(info.value), (None, 4), (3, 5))


def test_wrong_input_shape_functional():
    inp = layers.Input(shape=(6,))
    m = models.Model(inp, layers.Dense(2)(inp))
    m.compile(loss="mse")
    with survives(None, ValueError) as info:
        m.predict(np.zeros((3, 7), np.float32), verbose=0)
    _shapes_in(str(info.value), (None, 6), (3, 7))
    assert m.predict(np.zeros((3, 6), np.float32), verbose=0).shape == (3, 2)


# ------------------------------------------------------------------ unknown names
VALID = re.compile(r"[Vv]alid")


def test_unknown_loss_name():
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    with survives(None, ValueError) as info:
        # Keras resolves the loss at compile or at the first fit
        m.compile(optimizer="sgd", loss="categorical_crossentropyy")
        m.fit(X, Y, verbose=0, batch_size=N)
    msg = str(info.value)
    assert "categorical_crossentropyy" in msg and VALID.search(msg)
    assert "categorical_crossentropy'" in msg and "mse" in msg
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert np.isfinite(m.evaluate(X, Y, verbose=0, batch_size=N))


def test_unknown_optimizer_name():
    m = models.Sequential([layers.Dense(3, input_shape=(4,))])
    with survives(None, ValueError) as info:
        m.compile(optimizer="adamm", loss="mse")
    msg = str(info.value)
    assert "adamm" in msg and VALID.search(msg)
    for name in ("sgd", "rmsprop", "adam"):
        assert name in msg


@pytest.mark.parametrize("where", ["Dense", "Activation"])
def test_unknown_activation_name(where):
    with survives(None, ValueError) as info:
        if where == "Dense":
            layers.Dense(3, activation="reluu")
        else:
            layers.Activation("softmx")
    msg = str(info.value)
    assert VALID.search(msg) and "relu" in msg and "softmax" in msg and "sigmoid" in msg


def test_unknown_metric_name():
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    with survives(None, ValueError) as info:
        m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acuracy"])
        m.evaluate(X, Y, verbose=0, batch_size=N)
    msg = str(info.value)
    assert "acuracy" in msg and VALID.search(msg) and "accuracy" in msg
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    assert len(m.evaluate(X, Y, verbose=0, batch_size=N)) == 2


# ------------------------------------------------------------------ non-numeric data
NON_NUMERIC = {
    "strings": np.array([["a", "b", "c", "d"]] * N),
    "string-lists": [["1", "2", "3", "4"]] * N,
    "objects": np.array([[object()] * 4] * N, dtype=object),
    "none": np.array([[None] * 4] * N, dtype=object),
    "dicts-in-array": np.array([[{}] * 4] * N, dtype=object),
}


@pytest.mark.parametrize("kind", sorted(NON_NUMERIC))
@pytest.mark.parametrize("call", ["fit", "predict", "evaluate"])
def test_non_numeric_inputs_raise_type_error(model, call, kind):
    xb = NON_NUMERIC[kind]
    with survives(model, TypeError) as info:
        if call == "fit":
            model.fit(xb, Y, verbose=0, batch_size=N)
        elif call == "predict":
            model.predict(xb, verbose=0)
        else:
            model.evaluate(xb, Y, verbose=0, batch_size=N)
    assert "numeric" in str(info.value) or "dtype" in str(info.value)


@pytest.mark.parametrize("kind", ["strings", "objects"])
def test_non_numeric_targets_raise_type_error(model, kind):
    yb = np.array([["a", "b", "c"]] * N) if kind == "strings" else \
        np.array([[object()] * 3] * N, dtype=object)
    with survives(model, TypeError):
        model.fit(X, yb, verbose=0, batch_size=N)
    with survives(model, TypeError):
        model.evaluate(X, yb, verbose=0, batch_size=N)


def test_complex_inputs_raise_type_error(model):
    with survives(model, TypeError):
        model.predict(X.astype(np.complex64), verbose=0)


# ------------------------------------------------------------------ labels vs output
@pytest.mark.parametrize("yshape", [(N, 4), (N, 2), (N,), (N, 3, 1), (N, 1)],
                         ids=["4-cols", "2-cols", "rank1", "rank3", "1-col"])
@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch"])
def test_labels_shape_mismatch(model, call, yshape):
    yb = np.zeros(yshape, np.float32)
    with survives(model, ValueError) as info:
        if call == "fit":
            model.fit(X, yb, verbose=0, batch_size=N)
        elif call == "evaluate":
            model.evaluate(X, yb, verbose=0, batch_size=N)
        else:
            model.train_on_batch(X, yb)
    msg = str(info.value)
    assert str((None, 3)) in msg and str((None, *yshape[1:])) in msg


def test_sparse_labels_shape_mismatch():
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with survives(None, ValueError):
        m.fit(X, np.zeros((N, 3), np.int32), verbose=0, batch_size=N)     # one-hot given
    with survives(None, ValueError):
        m.fit(X, np.full(N, 0.5, np.float32), verbose=0, batch_size=N)    # not integers
    assert np.isfinite(m.evaluate(X, np.arange(N) % 3, verbose=0, batch_size=N))


def test_mse_labels_mismatch():
    m = models.Sequential([layers.Dense(2, input_shape=(4,))])
    m.compile(optimizer="sgd", loss="mse")
    with survives(None, ValueError) as info:
        m.fit(X, np.zeros((N, 3), np.float32), verbose=0, batch_size=N)
    assert "(None, 3)" in str(info.value) and "(None, 2)" in str(info.value)


# ------------------------------------------------------------------ cardinality
@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_x_y_length_mismatch(model, call):
    with survives(model, ValueError) as info:
        if call == "fit":
            model.fit(X, Y[:N - 1], verbose=0, batch_size=N)
        elif call == "evaluate":
            model.evaluate(X[:N - 2], Y, verbose=0, batch_size=N)
        elif call == "train_on_batch":
            model.train_on_batch(X, Y[:3])
        else:
            model.test_on_batch(X[:3], Y)
    assert "cardinality" in str(info.value) or "samples" in str(info.value)


def test_sample_weight_length_mismatch(model):
    with survives(model, ValueError):
        model.fit(X, Y, sample_weight=np.ones(N - 1), verbose=0, batch_size=N)


def test_validation_data_length_mismatch(model):
    with survives(model, ValueError):
        model.fit(X, Y, validation_data=(X[:5], Y[:4]), verbose=0, batch_size=N)


def test_empty_data(model):
    with survives(model, ValueError):
        model.predict(np.zeros((0, 4), np.float32), verbose=0)
    with survives(model, ValueError):
        model.fit(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32), verbose=0)


def test_none_data(model):
    with survives(model, ValueError):
        model.fit(None, Y, verbose=0)
    with survives(model, ValueError):
        model.fit(X, None, verbose=0)


def test_validation_split_too_small_for_the_data(model):
    """Keras: 'Training data contains 1 samples, which is not sufficient to split it into a
    validation and training set as specified by `validation_split=0.5`' (ValueError)."""
    with survives(model, ValueError):
        model.fit(X[:1], Y[:1], validation_split=0.5, verbose=0)


def test_validation_split_out_of_range(model):
    with survives(model, ValueError):
        model.fit(X, Y, validation_split=1.5, verbose=0)


# ------------------------------------------------------------------ compile first
@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_calls_before_compile_raise_runtime_error(call):
    m = models.Sequential([layers.Dense(3, input_shape=(4,))])
    with survives(None, RuntimeError) as info:
        getattr(m, call)(X, Y, **({} if "batch" in call else {"verbose": 0}))
    assert "compile" in str(info.value)
    # predict needs no compile, and compiling afterwards works
    assert m.predict(X, verbose=0).shape == (N, 3)
    m.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(m.evaluate(X, Y, verbose=0))


def test_compile_bad_arguments():
    m = models.Sequential([layers.Dense(3, input_shape=(4,))])
    with survives(None, TypeError):
        m.compile(optimizer="sgd", loss="mse", metricz=["accuracy"])
    with survives(None, ValueError):
        m.compile(optimizer="sgd", loss="mse", backend="gpu")


# ------------------------------------------------------------------ batch size
@pytest.mark.parametrize("bs", [0, -1, 2.5, "32", True, [4]])
@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_bad_batch_size(model, call, bs):
    with survives(model, ValueError) as info:
        if call == "fit":
            model.fit(X, Y, batch_size=bs, verbose=0)
        elif call == "evaluate":
            model.evaluate(X, Y, batch_size=bs, verbose=0)
        else:
            model.predict(X, batch_size=bs, verbose=0)
    assert "batch_size" in str(info.value)


# ------------------------------------------------------------------ layer arguments
@pytest.mark.parametrize("units", [0, -1, "a", 2.5, None, True])
def test_dense_bad_units(units):
    with survives(None, ValueError) as info:
        layers.Dense(units)
    assert "units" in str(info.value)


def test_layer_unknown_keyword():
    with survives(None, TypeError):
        layers.Dense(3, activaton="relu")


def test_optimizer_bad_arguments():
    with survives(None, ValueError):
        optimizers.SGD(momentum=1.5)
    with survives(None, ValueError):
        optimizers.SGD(momentum=-0.1)


# ------------------------------------------------------------------ set_weights
def test_set_weights_wrong_shapes(model):
    k, b = model.get_weights()
    cases = [[k.T, b], [k, b[:2]], [k[:, :2], b], [np.zeros((4, 3, 1)), b], [k], [k, b, b],
             [b, k]]
    for ws in cases:
        with survives(model, ValueError) as info:
            model.set_weights(ws)
        msg = str(info.value)
        assert ("shape" in msg) or ("length" in msg) or ("expects" in msg), msg
    with survives(model, ValueError):
        model.layers[0].set_weights([k.T, b])
    with survives(model, ValueError):
        model.layers[0].set_weights([k])


def test_set_weights_shape_message_names_both(model):
    k, b = model.get_weights()
    with survives(model, ValueError) as info:
        model.set_weights([np.zeros((4, 2), np.float32), b])
    _shapes_in(str(info.value), (4, 3), (4, 2))


# ------------------------------------------------------------------ whole process
def test_bad_calls_in_a_fresh_process_do_not_kill_it():
    """The same kinds of bad calls in a new interpreter against a natively compiled model:
    each gives its exception, and the interpreter exits normally."""
    code = textwrap.dedent("""
        import numpy as np
        from kcompile import layers, models
        m = models.Sequential([layers.Dense(3, activation='softmax', input_shape=(4,))])
        m.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
        x = np.random.rand(8, 4).astype('float32'); y = np.eye(3, dtype='float32')[[0, 1, 2] * 2 + [0, 1]]
        m.fit(x, y, batch_size=8, verbose=0)
        bad = [lambda: m.predict(np.zeros((8, 5)), verbose=0),
               lambda: m.fit(np.zeros((8, 4, 2)), y, batch_size=8, verbose=0),
               lambda: m.fit(x, np.zeros((8, 5)), batch_size=8, verbose=0),
               lambda: m.evaluate(x, y[:3], batch_size=8, verbose=0),
               lambda: m.predict(np.array([['a'] * 4] * 8), verbose=0),
               lambda: m.fit(x, y, batch_size=0, verbose=0),
               lambda: m.set_weights([np.zeros((5, 3)), np.zeros(3)]),
               lambda: m.train_on_batch(np.zeros((8, 3)), y)]
        kinds = []
        for f in bad:
            try:
                f()
                kinds.append('none')
            except (ValueError, TypeError) as e:
                kinds.append(type(e).__name__)
        print(','.join(kinds))
        print('alive', m.predict(x, verbose=0).shape, m.evaluate(x, y, batch_size=8, verbose=0)[0] > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == ",".join(["ValueError", "ValueError", "ValueError", "ValueError",
                                  "TypeError", "ValueError", "ValueError", "ValueError"])
    assert lines[-1] == "alive (8, 3) True"


def test_batch_size_larger_than_the_data_is_one_batch():
    """A careless batch_size=10**9 trains on the data as one batch (as Keras does), instead
    of compiling for a billion samples."""
    from kcompile import layers, models
    m = models.Sequential([layers.Dense(4, activation="relu", input_shape=(3,)),
                           layers.Dense(2, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((10, 3), dtype=np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1] * 5]
    h = m.fit(x, y, batch_size=10**9, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2
    assert len(m.evaluate(x, y, batch_size=10**9, verbose=0)) == 2
    assert m.predict(x, batch_size=10**9, verbose=0).shape == (10, 2)
    assert all(key[0] <= 10 for key in m._executables)


# ------------------------------------------------------------------ labels and epochs
@pytest.fixture(scope="module")
def sparse_model():
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(X, np.arange(N) % 3, batch_size=N, epochs=1, verbose=0)
    return m


@pytest.mark.parametrize("label", [3, 7, -1])
@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_sparse_labels_out_of_range(sparse_model, call, label):
    """A label outside [0, classes) is rejected before the step, with the label, its
    position in the data and the valid range (as Embedding's ids are)."""
    y = (np.arange(N) % 3).astype(np.float32)
    y[6] = label
    run = {"fit": lambda: sparse_model.fit(X, y, batch_size=4, verbose=0),
           "evaluate": lambda: sparse_model.evaluate(X, y, batch_size=4, verbose=0),
           "train_on_batch": lambda: sparse_model.train_on_batch(X, y),
           "test_on_batch": lambda: sparse_model.test_on_batch(X, y)}[call]
    weights = sparse_model.get_weights()
    with pytest.raises(ValueError) as info:
        run()
    msg = str(info.value)
    assert f"label {label} " in msg and "position (6,)" in msg and "[0, 3)" in msg, msg
    for a, b in zip(weights, sparse_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # labels in range (ignored ones included, when ignore_class is one) still train
    assert np.isfinite(sparse_model.train_on_batch(X, np.arange(N) % 3)[0])


def test_sparse_labels_ignore_class_is_allowed():
    m = models.Sequential([layers.Dense(3, input_shape=(4,))])
    from kcompile import losses
    m.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                        ignore_class=-1))
    y = (np.arange(N) % 3).astype(np.float32)
    y[2] = -1
    assert np.isfinite(m.train_on_batch(X, y))


@pytest.mark.parametrize("arg,value", [("epochs", -1), ("epochs", 1.5), ("initial_epoch", -2)])
def test_fit_negative_epochs(model, arg, value):
    with survives(model, ValueError, match=f"`{arg}` must be a non-negative integer"):
        model.fit(X, Y, batch_size=N, verbose=0, **{arg: value})
