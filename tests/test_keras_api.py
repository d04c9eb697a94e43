"""The Keras 3 API surface: signatures and defaults, naming, weights, summary,
history, validation_split, evaluate/predict return values, the *_on_batch
calls, Input in a Sequential, the functional Model, activations, to_categorical.
"""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kcompile import activations, layers, losses, models, optimizers, utils
from kcompile.optimizers import Optimizer

ROOT = Path(__file__).resolve().parents[1]
_E = inspect.Parameter.empty

# ------------------------------------------------------------------ signatures (Keras 3)
DENSE = [("units", _E), ("activation", None), ("use_bias", True),
         ("kernel_initializer", "glorot_uniform"), ("bias_initializer", "zeros"),
         ("kernel_regularizer", None), ("bias_regularizer", None),
         ("activity_regularizer", None), ("kernel_constraint", None), ("bias_constraint", None)]
ACTIVATION = [("activation", _E)]
COMPILE = [("optimizer", "rmsprop"), ("loss", None), ("loss_weights", None), ("metrics", None),
           ("weighted_metrics", None), ("run_eagerly", False), ("steps_per_execution", 1),
           ("jit_compile", "auto"), ("auto_scale_loss", True)]
FIT = [("x", None), ("y", None), ("batch_size", None), ("epochs", 1), ("verbose", "auto"),
       ("callbacks", None), ("validation_split", 0.0), ("validation_data", None),
       ("shuffle", True), ("class_weight", None), ("sample_weight", None), ("initial_epoch", 0),
       ("steps_per_epoch", None), ("validation_steps", None), ("validation_batch_size", None),
       ("validation_freq", 1)]
EVALUATE = [("x", None), ("y", None), ("batch_size", None), ("verbose", "auto"),
            ("sample_weight", None), ("steps", None), ("callbacks", None), ("return_dict", False)]
PREDICT = [("x", _E), ("batch_size", None), ("verbose", "auto"), ("steps", None),
           ("callbacks", None)]
TRAIN_ON_BATCH = [("x", _E), ("y", None), ("sample_weight", None), ("class_weight", None),
                  ("return_dict", False)]
TEST_ON_BATCH = [("x", _E), ("y", None), ("sample_weight", None), ("return_dict", False)]
PREDICT_ON_BATCH = [("x", _E)]
OPT_COMMON = [("weight_decay", None), ("clipnorm", None), ("clipvalue", None),
              ("global_clipnorm", None), ("use_ema", False), ("ema_momentum", 0.99),
              ("ema_overwrite_frequency", None), ("loss_scale_factor", None),
              ("gradient_accumulation_steps", None), ("name", None)]
SGD = [("learning_rate", 0.01), ("momentum", 0.0), ("nesterov", False)] + OPT_COMMON
RMSPROP = [("learning_rate", 0.001), ("rho", 0.9), ("momentum", 0.0), ("epsilon", 1e-7),
           ("centered", False)] + OPT_COMMON
ADAM = [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-7),
        ("amsgrad", False)] + OPT_COMMON
ADAMW = [("learning_rate", 0.001), ("weight_decay", 0.004), ("beta_1", 0.9), ("beta_2", 0.999),
         ("epsilon", 1e-7), ("amsgrad", False)] + OPT_COMMON[1:]
ADAGRAD = [("learning_rate", 0.001), ("initial_accumulator_value", 0.1), ("epsilon", 1e-7)] + \
    OPT_COMMON
ADAMAX = [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-7)] + \
    OPT_COMMON
INPUT = [("shape", None), ("batch_size", None), ("dtype", None), ("sparse", None)]
TO_CATEGORICAL = [("x", _E), ("num_classes", None)]


def _params(fn):
    ps = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return [p for p in ps if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)], \
        any(p.kind == p.VAR_KEYWORD for p in ps)


def assert_keras_signature(fn, expected, extra_ok=True):
    """`expected` (name, default) must be the leading parameters, in order, with Keras'
    defaults; any further parameters must have defaults (library extras such as backend=)."""
    params, _ = _params(fn)
    got = [(p.name, p.default) for p in params[:len(expected)]]
    assert got == expected, f"{fn.__qualname__}: {got} != {expected}"
    for p in params[len(expected):]:
        assert extra_ok and p.default is not _E, f"unexpected required parameter {p.name}"


@pytest.mark.parametrize("fn, expected", [
    (layers.Dense, DENSE), (layers.Activation, ACTIVATION),
    (models.Sequential.compile, COMPILE), (models.Sequential.fit, FIT),
    (models.Sequential.evaluate, EVALUATE), (models.Sequential.predict, PREDICT),
    (models.Sequential.train_on_batch, TRAIN_ON_BATCH),
    (models.Sequential.test_on_batch, TEST_ON_BATCH),
    (models.Sequential.predict_on_batch, PREDICT_ON_BATCH),
    (layers.Input, INPUT), (utils.to_categorical, TO_CATEGORICAL),
], ids=["Dense", "Activation", "compile", "fit", "evaluate", "predict", "train_on_batch",
        "test_on_batch", "predict_on_batch", "Input", "to_categorical"])
def test_signature(fn, expected):
    assert_keras_signature(fn, expected)


@pytest.mark.parametrize("cls, expected", [
    (optimizers.SGD, SGD), (optimizers.RMSprop, RMSPROP), (optimizers.Adam, ADAM),
    (optimizers.AdamW, ADAMW), (optimizers.Adagrad, ADAGRAD), (optimizers.Adamax, ADAMAX)],
    ids=["SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adamax"])
def test_optimizer_signature(cls, expected):
    """The optimizer's own parameters lead in Keras' order; the shared ones (weight_decay,
    clipnorm, ...) come through **kwargs to the base class with Keras' defaults."""
    own, has_kwargs = _params(cls.__init__)
    n = len(own)
    assert [(p.name, p.default) for p in own] == expected[:n]
    base, _ = _params(Optimizer.__init__)
    base = {p.name: p.default for p in base}
    rest = expected[n:]
    if rest:
        assert has_kwargs
        for name, default in rest:
            assert name in base and base[name] == default, name
    # and every Keras keyword is accepted by the constructor
    cls(**{k: v for k, v in expected if v is not _E and k != "name"})


def test_loss_class_signatures():
    def kw(cls):
        return {k: v.default for k, v in inspect.signature(cls).parameters.items()
                if v.kind is not v.VAR_KEYWORD}
    for cls in (losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                losses.SparseCategoricalCrossentropy):
        obj = cls()
        assert obj.reduction == "sum_over_batch_size"
        assert obj.kwargs.get("from_logits") is False
        assert kw(cls).get("reduction") == "sum_over_batch_size"


# ------------------------------------------------------------------ naming
def test_default_layer_and_model_names_in_a_fresh_process():
    code = textwrap.dedent("""
        from kcompile import layers, models
        names = [layers.Dense(2).name, layers.Dense(2).name, layers.Dense(2).name,
                 layers.Activation('relu').name, layers.Activation('relu').name,
                 models.Sequential().name, models.Sequential().name]
        print(",".join(names))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",") == ["dense", "dense_1", "dense_2", "activation",
                                             "activation_1", "sequential", "sequential_1"]


def test_layer_names_increment_and_explicit_names_kept():
    a, b = layers.Dense(2), layers.Dense(2)
    base = a.name.rsplit("_", 1)
    ia = int(base[1]) if len(base) == 2 and base[1].isdigit() else 0
    assert b.name == f"dense_{ia + 1}"
    assert layers.Dense(2, name="my_dense").name == "my_dense"
    model = models.Sequential([layers.Dense(3, input_shape=(2,), name="first"),
                               layers.Dense(1, name="second")], name="net")
    assert model.name == "net"
    assert [l.name for l in model.layers] == ["first", "second"]
    assert model.get_layer("second") is model.layers[1]
    assert [w.name for w in model.weights] == ["kernel", "bias", "kernel", "bias"]


# ------------------------------------------------------------------ weights
def _mlp(**dense_kw):
    return models.Sequential([layers.Dense(5, activation="relu", input_shape=(3,), **dense_kw),
                              layers.Dense(2, **dense_kw)])


def test_get_set_weights_order_and_shapes():
    model = _mlp()
    ws = model.get_weights()
    assert [w.shape for w in ws] == [(3, 5), (5,), (5, 2), (2,)]
    assert all(w.dtype == np.float32 for w in ws)
    assert not np.any(ws[1]) and not np.any(ws[3])     # zeros bias initializer
    assert np.any(ws[0]) and np.all(np.abs(ws[0]) <= np.sqrt(6 / (3 + 5)) + 1e-6)  # glorot
    rng = np.random.default_rng(0)
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in ws]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], new[0])
    np.testing.assert_array_equal(model.layers[1].get_weights()[1], new[3])
    assert model.layers[0].kernel.shape == (3, 5) and model.layers[0].bias.shape == (5,)
    # the weights are the model's: predict follows them
    x = rng.standard_normal((4, 3)).astype(np.float32)
    want = np.maximum(x @ new[0] + new[1], 0) @ new[2] + new[3]
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert model.count_params() == 3 * 5 + 5 + 5 * 2 + 2
    # get_weights returns copies
    model.get_weights()[0][...] = 0
    np.testing.assert_array_equal(model.get_weights()[0], new[0])
    # a layer's set_weights
    model.layers[1].set_weights([np.ones((5, 2), np.float32), np.zeros(2, np.float32)])
    np.testing.assert_array_equal(model.get_weights()[2], np.ones((5, 2)))
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.maximum(x @ new[0] + new[1], 0).sum(1, keepdims=True).repeat(2, 1),
                               rtol=1e-5, atol=1e-6)


def test_no_bias_weights():
    model = models.Sequential([layers.Dense(4, use_bias=False, input_shape=(3,))])
    assert [w.shape for w in model.get_weights()] == [(3, 4)]
    assert model.layers[0].bias is None


# ------------------------------------------------------------------ summary
def test_summary_prints_layers_and_param_counts(capsys):
    model = models.Sequential([layers.Dense(5, activation="relu", input_shape=(3,), name="hid"),
                               layers.Dense(2, name="out")], name="summ")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "summ"' in text
    assert "hid (Dense)" in text and "out (Dense)" in text
    assert "(None, 5)" in text and "(None, 2)" in text
    hid_row = next(l for l in text.splitlines() if "hid (Dense)" in l)
    out_row = next(l for l in text.splitlines() if "out (Dense)" in l)
    assert hid_row.rstrip("│ ").endswith("20") and out_row.rstrip("│ ").endswith("12")
    assert "Total params: 32" in text
    assert "Trainable params: 32" in text
    assert "Non-trainable params: 0" in text
    model.summary()
    assert "Total params: 32" in capsys.readouterr().out


def test_summary_big_counts_use_thousands_separator():
    model = models.Sequential([layers.Dense(512, input_shape=(784,))])
    lines = []
    model.summary(print_fn=lines.append)
    assert "401,920" in "\n".join(lines)


# ------------------------------------------------------------------ fit / history / evaluate
rng = np.random.default_rng(42)
XC = rng.standard_normal((50, 3)).astype(np.float32)
YC_LAB = (XC[:, 0] + 0.5 * XC[:, 1] > 0).astype(np.int64) + (XC[:, 2] > 1).astype(np.int64)
YC = utils.to_categorical(YC_LAB, 3)


def _clf(backend="native", metrics=("accuracy",)):
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(3,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=list(metrics) if metrics else None, backend=backend)
    return model


def test_history_keys_and_lengths():
    model = _clf()
    h = model.fit(XC[:40], YC[:40], epochs=3, batch_size=16, verbose=0,
                  validation_data=(XC[40:], YC[40:]))
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert all(isinstance(v, float) for vals in h.history.values() for v in vals)
    assert h.epoch == [0, 1, 2]
    assert model.history is h
    # the last val_ numbers are those of evaluate with the final weights
    val_loss, val_acc = model.evaluate(XC[40:], YC[40:], batch_size=16, verbose=0)
    assert h.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert h.history["val_accuracy"][-1] == pytest.approx(val_acc)
    h2 = model.fit(XC, YC, epochs=2, batch_size=16, verbose=0)
    assert set(h2.history) == {"loss", "accuracy"} and len(h2.history["loss"]) == 2


def test_history_with_initial_epoch():
    model = _clf()
    h = model.fit(XC, YC, epochs=3, initial_epoch=1, batch_size=16, verbose=0)
    assert h.epoch == [1, 2] and len(h.history["loss"]) == 2


def test_validation_split_uses_last_samples():
    model = _clf()
    # Keras: split_at = floor(n * (1 - validation_split)); the validation set is x[split_at:]
    n, split = 33, 0.3
    split_at = int(np.floor(n * (1 - split)))          # 23
    h = model.fit(XC[:n], YC[:n], epochs=1, batch_size=8, validation_split=split, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    val_loss, val_acc = model.evaluate(XC[split_at:n], YC[split_at:n], batch_size=8, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-6)
    assert h.history["val_accuracy"][0] == pytest.approx(val_acc)
    # the optimizer saw ceil(23 / 8) = 3 batches
    assert float(model.optimizer.iterations.numpy()) == 3


def test_evaluate_return_types():
    with_acc = _clf()
    res = with_acc.evaluate(XC, YC, batch_size=16, verbose=0)
    assert isinstance(res, list) and len(res) == 2 and all(isinstance(v, float) for v in res)
    assert 0.0 <= res[1] <= 1.0
    d = with_acc.evaluate(XC, YC, batch_size=16, verbose=0, return_dict=True)
    assert d == {"loss": res[0], "accuracy": res[1]}
    no_metrics = _clf(metrics=None)
    res = no_metrics.evaluate(XC, YC, batch_size=16, verbose=0)
    assert isinstance(res, float)


@pytest.mark.parametrize("n", [1, 7, 33, 1000])
def test_predict_row_counts_match_reference(n):
    model = models.Sequential([layers.Dense(6, activation="tanh", input_shape=(5,)),
                               layers.Dense(3, activation="softmax")])
    ref = models.Sequential([layers.Dense(6, activation="tanh", input_shape=(5,)),
                             layers.Dense(3, activation="softmax")])
    ref.set_weights(model.get_weights())
    ref.compile(loss="mse", backend="reference")
    x = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
    got = model.predict(x, verbose=0)
    assert got.shape == (n, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    w1, b1, w2, b2 = model.get_weights()
    h = np.tanh(x.astype(np.float64) @ w1 + b1) @ w2 + b2
    e = np.exp(h - h.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    # predict without compile (Keras allows it) and with an explicit batch size
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), got, rtol=1e-6,
                               atol=1e-7)


def test_on_batch_calls():
    model = _clf()
    x, y = XC[:16], YC[:16]
    loss0, acc0 = model.test_on_batch(x, y)
    ev = model.evaluate(x, y, batch_size=16, verbose=0)
    assert [loss0, acc0] == pytest.approx(ev, rel=1e-6)
    before = model.get_weights()
    tl, ta = model.train_on_batch(x, y)
    assert tl == pytest.approx(loss0, rel=1e-5)        # the loss before the update
    assert ta == pytest.approx(acc0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    loss1 = model.test_on_batch(x, y)[0]
    assert loss1 < loss0
    d = model.train_on_batch(x, y, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    d = model.test_on_batch(x, y, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    p = model.predict_on_batch(x)
    assert p.shape == (16, 3)
    np.testing.assert_allclose(p, model.predict(x, batch_size=16, verbose=0), rtol=1e-6)
    nm = _clf(metrics=None)
    assert isinstance(nm.train_on_batch(x, y), float)
    assert isinstance(nm.test_on_batch(x, y), float)


# ------------------------------------------------------------------ Input, functional Model
def test_input_as_first_entry_of_sequential():
    model = models.Sequential([layers.Input(shape=(4,)), layers.Dense(3, activation="relu"),
                               layers.Dense(2)])
    assert [w.shape for w in model.get_weights()] == [(4, 3), (3,), (3, 2), (2,)]
    assert len(model.layers) == 2
    m2 = models.Sequential()
    m2.add(layers.Input(shape=(4,)))
    m2.add(layers.Dense(3))
    assert [w.shape for w in m2.get_weights()] == [(4, 3), (3,)]
    x = np.ones((2, 4), np.float32)
    assert m2.predict(x, verbose=0).shape == (2, 3)
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 23" in "\n".join(lines)


def test_functional_model_trains_and_matches_sequential():
    inp = layers.Input(shape=(3,))
    h = layers.Dense(8, activation="relu")(inp)
    out = layers.Dense(3, activation="softmax")(h)
    fmodel = models.Model(inputs=inp, outputs=out)
    assert [w.shape for w in fmodel.get_weights()] == [(3, 8), (8,), (8, 3), (3,)]
    seq = models.Sequential([layers.Dense(8, activation="relu", input_shape=(3,)),
                             layers.Dense(3, activation="softmax")])
    seq.set_weights(fmodel.get_weights())
    np.testing.assert_allclose(fmodel.predict(XC, verbose=0), seq.predict(XC, verbose=0),
                               rtol=1e-6, atol=1e-7)
    for m in (fmodel, seq):
        m.compile(optimizer=optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    hf = fmodel.fit(XC, YC, epochs=5, batch_size=10, shuffle=False, verbose=0).history
    hs = seq.fit(XC, YC, epochs=5, batch_size=10, shuffle=False, verbose=0).history
    np.testing.assert_allclose(hf["loss"], hs["loss"], rtol=1e-5)
    assert hf["loss"][-1] < hf["loss"][0]
    for a, b in zip(fmodel.get_weights(), seq.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ activations
def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


NP_ACT = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _np_softmax,
    "log_softmax": lambda x: np.log(_np_softmax(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "exponential": np.exp,
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
}
XA = np.concatenate([np.linspace(-8, 8, 33)[None, :].repeat(2, 0),
                     np.random.default_rng(3).standard_normal((2, 33)) * 3]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(NP_ACT))
def test_activation_by_name(name):
    model = models.Sequential([layers.Activation(name, input_shape=(33,))])
    got = model.predict(XA, verbose=0)
    np.testing.assert_allclose(got, NP_ACT[name](XA.astype(np.float64)), rtol=2e-5, atol=2e-6)


def test_activation_by_function_and_in_dense():
    w = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    b = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    x = XC[:6]
    outs = []
    for act in ("tanh", activations.tanh):
        m = models.Sequential([layers.Dense(4, activation=act, input_shape=(3,))])
        m.set_weights([w, b])
        outs.append(m.predict(x, verbose=0))
    m = models.Sequential([layers.Dense(4, input_shape=(3,)), layers.Activation(activations.tanh)])
    m.set_weights([w, b])
    outs.append(m.predict(x, verbose=0))
    want = np.tanh(x.astype(np.float64) @ w + b)
    for o in outs:
        np.testing.assert_allclose(o, want, rtol=1e-5, atol=1e-6)
    assert activations.get("relu") is activations.relu
    assert activations.get(None) is activations.linear


# ------------------------------------------------------------------ utils
def test_to_categorical():
    out = utils.to_categorical([0, 2, 1, 2])
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1, 2]])
    assert out.shape == (4, 3)
    out = utils.to_categorical(np.array([1, 0]), num_classes=5)
    np.testing.assert_array_equal(out, np.eye(5)[[1, 0]])
    out = utils.to_categorical(np.array([[1], [3]]), 4)          # (n, 1) -> (n, C)
    assert out.shape == (2, 4)
    np.testing.assert_array_equal(out, np.eye(4)[[1, 3]])
    out = utils.to_categorical(np.array([[0, 1, 2], [2, 1, 0]]))  # (2, 3) -> (2, 3, 3)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1, 0], [0, 0, 1])
    out = utils.to_categorical(np.array([0.0, 2.0]), 3)        # float labels holding integers
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2]])
