"""Optimizers against Keras 3's update formulas, written out in numpy here.

The model is one linear Dense layer (4 -> 3) trained with mse on one fixed
batch, so the gradient is analytic:

    P = X W + b,  loss = mean((P - Y)^2),  dP = 2 (P - Y) / P.size,
    dW = X^T dP,  db = sum_rows(dP)

Each case runs a few `train_on_batch` steps on the native and the reference
backend from the same known weights and compares the loss of every step and
the weights after every step with the numpy formula (float64), rtol 1e-5.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers

BACKENDS = ["native", "reference"]
RTOL, ATOL = 1e-5, 1e-6
STEPS = 3

_rng = np.random.default_rng(1234)
X = _rng.standard_normal((6, 4)).astype(np.float32)
Y = (_rng.standard_normal((6, 3)) * 2.0).astype(np.float32)
W0 = (_rng.standard_normal((4, 3)) * 0.5).astype(np.float32)
B0 = (_rng.standard_normal(3) * 0.3).astype(np.float32)


def mse_and_grads(params):
    """Loss and analytic gradients of mean((X W + b - Y)^2), float64."""
    w, b = params
    x, y = X.astype(np.float64), Y.astype(np.float64)
    r = x @ w + b - y
    d = 2.0 * r / r.size
    return float(np.mean(r ** 2)), [x.T @ d, d.sum(axis=0)]


def f32(v):
    """A hyperparameter as Keras holds it: rounded to float32."""
    return float(np.float32(v))


# ----------------------------------------------------------------------------------------
# Keras 3 update rules in numpy (keras/src/optimizers/*.py)
# ----------------------------------------------------------------------------------------
class NpOptimizer:
    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, decay=0.0):
        self.lr = float(learning_rate)
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.decay = decay
        self.iterations = 0
        self.slots = {}

    def clip(self, grads):
        if self.clipnorm is not None:
            out = []
            for g in grads:
                n = np.sqrt(np.sum(g * g))
                out.append(g * self.clipnorm / max(n, self.clipnorm))
            return out
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.global_clipnorm is not None:
            n = np.sqrt(sum(np.sum(g * g) for g in grads))
            scale = self.global_clipnorm * min(1.0 / n, 1.0 / self.global_clipnorm)
            return [g * scale for g in grads]
        return grads

    def apply(self, params, grads):
        lr = self.lr
        if self.decay:                     # Keras 2 inverse-time decay, pre-increment count
            lr = lr / (1.0 + self.decay * self.iterations)
        grads = self.clip(grads)
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.weight_decay:
                p = p - p * self.weight_decay * lr
            new.append(self.update(i, p, g, lr))
        self.iterations += 1
        return new

    def slot(self, i, name, like, init=0.0):
        return self.slots.setdefault((i, name), np.full_like(like, init))


class NpSGD(NpOptimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kw):
        super().__init__(learning_rate, **kw)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, i, p, g, lr):
        if not self.momentum:
            return p - lr * g
        m = self.momentum * self.slot(i, "m", p) - lr * g
        self.slots[(i, "m")] = m
        if self.nesterov:
            return p + self.momentum * m - lr * g
        return p + m


class NpRMSprop(NpOptimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kw):
        super().__init__(learning_rate, **kw)
        self.rho, self.momentum, self.eps, self.centered = rho, momentum, epsilon, centered

    def update(self, i, p, g, lr):
        v = self.rho * self.slot(i, "v", p) + (1 - self.rho) * g * g
        self.slots[(i, "v")] = v
        if self.centered:
            a = self.rho * self.slot(i, "a", p) + (1 - self.rho) * g
            self.slots[(i, "a")] = a
            denom = v - a * a + self.eps
        else:
            denom = v + self.eps
        inc = lr * g / np.sqrt(denom)
        if self.momentum:
            m = self.momentum * self.slot(i, "m", p) + inc
            self.slots[(i, "m")] = m
            return p - m
        return p - inc


class NpAdam(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kw):
        super().__init__(learning_rate, **kw)
        # Keras computes beta ** t in float32: use the float32 betas (1 - 0.999 in float32
        # is 1.3e-5 off in relative terms, which would otherwise show through rtol 1e-5)
        self.b1, self.b2 = f32(beta_1), f32(beta_2)
        self.eps, self.amsgrad = epsilon, amsgrad

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        alpha = lr * np.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
        m = self.slot(i, "m", p)
        v = self.slot(i, "v", p)
        m = m + (g - m) * (1 - self.b1)
        v = v + (g * g - v) * (1 - self.b2)
        self.slots[(i, "m")], self.slots[(i, "v")] = m, v
        if self.amsgrad:
            v = np.maximum(self.slot(i, "vhat", p), v)
            self.slots[(i, "vhat")] = v
        return p - m * alpha / (np.sqrt(v) + self.eps)


class NpAdagrad(NpOptimizer):
    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.init, self.eps = initial_accumulator_value, epsilon

    def update(self, i, p, g, lr):
        acc = self.slot(i, "acc", p, self.init) + g * g
        self.slots[(i, "acc")] = acc
        return p - lr * g / np.sqrt(acc + self.eps)


class NpAdamax(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2, self.eps = f32(beta_1), f32(beta_2), epsilon

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        m = self.slot(i, "m", p)
        u = self.slot(i, "u", p)
        m = m + (g - m) * (1 - self.b1)
        u = np.maximum(self.b2 * u, np.abs(g))
        self.slots[(i, "m")], self.slots[(i, "u")] = m, u
        return p - lr * m / ((1 - self.b1 ** t) * (u + self.eps))


# (id, kcompile optimizer factory, numpy reference factory)
CASES = [
    ("sgd", lambda: optimizers.SGD(learning_rate=0.1), lambda: NpSGD(0.1)),
    ("sgd-default", lambda: optimizers.SGD(), lambda: NpSGD(0.01)),
    ("sgd-momentum0.9", lambda: optimizers.SGD(0.1, momentum=0.9),
     lambda: NpSGD(0.1, momentum=0.9)),
    ("sgd-nesterov", lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     lambda: NpSGD(0.1, momentum=0.9, nesterov=True)),
    ("sgd-weight_decay", lambda: optimizers.SGD(0.1, weight_decay=0.05),
     lambda: NpSGD(0.1, weight_decay=0.05)),
    ("rmsprop", lambda: optimizers.RMSprop(learning_rate=0.01), lambda: NpRMSprop(0.01)),
    ("rmsprop-default", lambda: optimizers.RMSprop(), lambda: NpRMSprop()),
    ("rmsprop-momentum", lambda: optimizers.RMSprop(0.01, momentum=0.5),
     lambda: NpRMSprop(0.01, momentum=0.5)),
    ("rmsprop-centered", lambda: optimizers.RMSprop(0.01, centered=True),
     lambda: NpRMSprop(0.01, centered=True)),
    ("rmsprop-centered-momentum-rho", lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.3,
                                                                 centered=True),
     lambda: NpRMSprop(0.01, rho=0.8, momentum=0.3, centered=True)),
    ("adam", lambda: optimizers.Adam(learning_rate=0.05), lambda: NpAdam(0.05)),
    ("adam-default", lambda: optimizers.Adam(), lambda: NpAdam()),
    ("adam-betas-eps", lambda: optimizers.Adam(0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-3),
     lambda: NpAdam(0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-3)),
    ("adam-amsgrad", lambda: optimizers.Adam(0.05, amsgrad=True),
     lambda: NpAdam(0.05, amsgrad=True)),
    ("adamw-default-decay", lambda: optimizers.AdamW(learning_rate=0.05),
     lambda: NpAdam(0.05, weight_decay=0.004)),
    ("adamw-decay0.1", lambda: optimizers.AdamW(0.05, weight_decay=0.1),
     lambda: NpAdam(0.05, weight_decay=0.1)),
    ("adamw-amsgrad", lambda: optimizers.AdamW(0.05, weight_decay=0.1, amsgrad=True),
     lambda: NpAdam(0.05, weight_decay=0.1, amsgrad=True)),
    ("adagrad", lambda: optimizers.Adagrad(learning_rate=0.1), lambda: NpAdagrad(0.1)),
    ("adagrad-init-acc", lambda: optimizers.Adagrad(0.1, initial_accumulator_value=1.0,
                                                    epsilon=1e-4),
     lambda: NpAdagrad(0.1, initial_accumulator_value=1.0, epsilon=1e-4)),
    ("adamax", lambda: optimizers.Adamax(learning_rate=0.05), lambda: NpAdamax(0.05)),
    ("adamax-betas", lambda: optimizers.Adamax(0.05, beta_1=0.7, beta_2=0.9),
     lambda: NpAdamax(0.05, beta_1=0.7, beta_2=0.9)),
    # gradient clipping (the gradients here are far above the thresholds)
    ("sgd-clipnorm", lambda: optimizers.SGD(0.1, clipnorm=0.5), lambda: NpSGD(0.1, clipnorm=0.5)),
    ("sgd-clipvalue", lambda: optimizers.SGD(0.1, clipvalue=0.2),
     lambda: NpSGD(0.1, clipvalue=0.2)),
    ("sgd-global_clipnorm", lambda: optimizers.SGD(0.1, global_clipnorm=0.5),
     lambda: NpSGD(0.1, global_clipnorm=0.5)),
    ("adam-clipnorm", lambda: optimizers.Adam(0.05, clipnorm=0.3),
     lambda: NpAdam(0.05, clipnorm=0.3)),
    ("rmsprop-clipvalue", lambda: optimizers.RMSprop(0.01, clipvalue=0.1),
     lambda: NpRMSprop(0.01, clipvalue=0.1)),
    ("sgd-momentum-global_clipnorm", lambda: optimizers.SGD(0.1, momentum=0.9,
                                                            global_clipnorm=1.0),
     lambda: NpSGD(0.1, momentum=0.9, global_clipnorm=1.0)),
    # Keras 2 spellings
    ("adam-legacy", lambda: optimizers.Adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=None,
                                            decay=0., amsgrad=False),
     lambda: NpAdam(0.001)),
    ("adam-legacy-decay", lambda: optimizers.Adam(lr=0.05, epsilon=None, decay=0.5),
     lambda: NpAdam(0.05, decay=0.5)),
    ("sgd-legacy-decay", lambda: optimizers.SGD(lr=0.1, momentum=0.9, decay=0.3),
     lambda: NpSGD(0.1, momentum=0.9, decay=0.3)),
    ("rmsprop-legacy-decay", lambda: optimizers.RMSprop(lr=0.01, decay=1.0),
     lambda: NpRMSprop(0.01, decay=1.0)),
]


def make_model(optimizer, backend):
    model = models.Sequential([layers.Dense(3, input_shape=(4,))])
    model.set_weights([W0, B0])
    model.compile(optimizer=optimizer, loss="mse", backend=backend)
    return model


def assert_weights(model, params, step, what=""):
    got = model.get_weights()
    assert len(got) == 2
    for name, g, want in zip(("kernel", "bias"), got, params):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what} {name} after step {step}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_update_matches_keras_formula(case, backend):
    name, make_opt, make_ref = case
    model = make_model(make_opt(), backend)
    ref = make_ref()
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    for step in range(1, STEPS + 1):
        loss = model.train_on_batch(X, Y)
        want_loss, grads = mse_and_grads(params)
        if step == 1 and "clip" in name:        # the clipping must actually bite
            norms = [np.sqrt(np.sum(g * g)) for g in grads]
            limit = ref.clipnorm or ref.global_clipnorm or ref.clipvalue
            assert max(norms) > 2 * limit
        params = ref.apply(params, grads)
        np.testing.assert_allclose(loss, want_loss, rtol=RTOL, err_msg=f"{name} loss step {step}")
        assert_weights(model, params, step, name)
    # the weights really moved (a wrong formula could not hide under the tolerance)
    assert np.max(np.abs(params[0] - W0)) > 1e-3
    assert float(model.optimizer.iterations.numpy()) == STEPS


@pytest.mark.parametrize("backend", BACKENDS)
def test_learning_rate_change_takes_effect_without_recompiling(backend):
    opt = optimizers.SGD(0.1, momentum=0.9)
    model = make_model(opt, backend)
    ref = NpSGD(0.1, momentum=0.9)
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    model.train_on_batch(X, Y)
    params = ref.apply(params, mse_and_grads(params)[1])
    n_exe = len(model._executables)
    assert n_exe == 1
    for step, lr in enumerate([0.01, 0.3, 0.0], start=2):
        model.optimizer.learning_rate = lr
        ref.lr = lr
        assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(lr)
        before = model.get_weights()
        model.train_on_batch(X, Y)
        params = ref.apply(params, mse_and_grads(params)[1])
        assert_weights(model, params, step, f"lr={lr}")
        assert len(model._executables) == n_exe, "changing the learning rate recompiled"
        if lr == 0.0:        # momentum still carries the weights even with lr 0
            assert not np.allclose(before[0], model.get_weights()[0])
    assert float(model.optimizer.iterations.numpy()) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_learning_rate_change_adam(backend):
    model = make_model(optimizers.Adam(0.05), backend)
    ref = NpAdam(0.05)
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    for step, lr in enumerate([0.05, 0.001, 0.2], start=1):
        model.optimizer.learning_rate = lr
        ref.lr = lr
        model.train_on_batch(X, Y)
        params = ref.apply(params, mse_and_grads(params)[1])
        assert_weights(model, params, step, f"adam lr={lr}")
    assert len(model._executables) == 1


def test_iterations_count_fit_steps():
    model = make_model(optimizers.SGD(0.01), "native")
    assert float(model.optimizer.iterations.numpy()) == 0
    x = np.tile(X, (2, 1))[:10]
    y = np.tile(Y, (2, 1))[:10]
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)     # ceil(10/4) = 3 steps per epoch
    assert float(model.optimizer.iterations.numpy()) == 6
    model.train_on_batch(X, Y)
    assert float(model.optimizer.iterations.numpy()) == 7
    model.evaluate(X, Y, verbose=0)        # evaluation does not count
    model.predict(X, verbose=0)
    assert float(model.optimizer.iterations.numpy()) == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_learning_rate_assign_takes_effect(backend):
    """`optimizer.learning_rate.assign(x)` (the Keras 3 variable API) works like the setter."""
    model = make_model(optimizers.SGD(0.1), backend)
    ref = NpSGD(0.1)
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    for step, lr in enumerate([0.1, 0.02], start=1):
        model.optimizer.learning_rate.assign(lr)
        ref.lr = lr
        model.train_on_batch(X, Y)
        params = ref.apply(params, mse_and_grads(params)[1])
        assert_weights(model, params, step, f"assign lr={lr}")
    assert len(model._executables) == 1


def test_iterations_supports_int():
    """Keras 3 keeps `iterations` as an integer variable: int(optimizer.iterations) works."""
    model = make_model(optimizers.SGD(0.01), "native")
    model.train_on_batch(X, Y)
    model.train_on_batch(X, Y)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert int(model.optimizer.iterations) == 2


def test_iterations_counts_exactly_past_2_pow_24():
    """An integer counter counts exactly at any size; a float32 one stops at 2**24 =
    16,777,216 steps (2**24 + 1 rounds back to 2**24)."""
    model = make_model(optimizers.SGD(0.01), "native")
    model.train_on_batch(X, Y)
    model.optimizer.iterations.assign(2 ** 24)
    model.train_on_batch(X, Y)
    assert int(model.optimizer.iterations.numpy()) == 2 ** 24 + 1


def test_gradient_accumulation_steps():
    """Keras 3 accepts `gradient_accumulation_steps=k`: the weights change only every k-th
    step, with the mean of the k accumulated gradients. Accepting it and updating every
    step anyway would silently train differently."""
    model = make_model(optimizers.SGD(0.1, gradient_accumulation_steps=2), "native")
    xa, ya, xb, yb = X[:3], Y[:3], X[3:], Y[3:]
    model.train_on_batch(xa, ya)
    np.testing.assert_array_equal(model.get_weights()[0], W0, err_msg="updated on step 1 of 2")
    model.train_on_batch(xb, yb)

    def grads(x, y):
        r = x.astype(np.float64) @ W0 + B0 - y
        d = 2 * r / r.size
        return x.T @ d, d.sum(0)
    (ga, gb), (ha, hb) = grads(xa, ya), grads(xb, yb)
    assert_weights(model, [W0 - 0.1 * (ga + ha) / 2, B0 - 0.1 * (gb + hb) / 2], 2, "accumulated")


def test_optimizer_by_name_uses_keras_defaults():
    # a string optimizer must get Keras 3's default hyperparameters
    for name, cls, lr in [("sgd", optimizers.SGD, 0.01), ("rmsprop", optimizers.RMSprop, 0.001),
                          ("adam", optimizers.Adam, 0.001), ("adamw", optimizers.AdamW, 0.001),
                          ("adagrad", optimizers.Adagrad, 0.001),
                          ("adamax", optimizers.Adamax, 0.001)]:
        opt = optimizers.get(name)
        assert type(opt) is cls
        assert float(opt.learning_rate.numpy()) == pytest.approx(lr)
    assert optimizers.AdamW().weight_decay == pytest.approx(0.004)
    assert optimizers.RMSprop().rho == pytest.approx(0.9)
    assert optimizers.Adam().epsilon == pytest.approx(1e-7)
    assert optimizers.Adagrad().initial_accumulator_value == pytest.approx(0.1)


def test_string_optimizer_trains_like_default_instance():
    """compile(optimizer='rmsprop') is RMSprop() with Keras' defaults."""
    model = make_model("rmsprop", "native")
    ref = NpRMSprop()
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    for step in range(1, 3):
        model.train_on_batch(X, Y)
        params = ref.apply(params, mse_and_grads(params)[1])
        assert_weights(model, params, step, "rmsprop by name")


def test_only_one_clip_option():
    with pytest.raises(ValueError):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)


def test_decaying_optimizer_slots_never_turn_subnormal():
    """Units that never fire leave zero gradients, so RMSprop's velocity of their weights
    decays by rho every step: in float32 it passes the subnormal range after ~850 steps
    from 1e-7. Compiled steps flush such results to zero (FTZ) instead of carrying them,
    since every subnormal operand costs a microcode assist."""
    from kcompile import layers, models
    rng = np.random.default_rng(3)
    model = models.Sequential([layers.Input((16,)), layers.Dense(8, activation="relu"),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    w, b = model.layers[0].get_weights()
    w[:, :4] = -1.0                        # units 0-3 never fire on positive inputs
    model.layers[0].set_weights([w, b])
    x = rng.random((32, 16)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 32)]
    model.train_on_batch(x, y)
    velocity = [v for v in model.optimizer.variables if v.path.endswith("velocity")]
    for v in velocity:
        v.assign(np.full(v.shape, 1e-30, np.float32))       # 0.9^k reaches 1e-38 in ~180 steps
    for _ in range(300):
        model.train_on_batch(x, y)
    tiny = np.finfo(np.float32).tiny
    for v in velocity:
        a = np.abs(np.asarray(v.numpy()))
        assert not ((a > 0) & (a < tiny)).any(), f"subnormal values in {v.path}"
