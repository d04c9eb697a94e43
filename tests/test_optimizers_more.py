"""Nadam, Adadelta, Lion, Ftrl, Lamb, Adafactor and the moving averages of use_ema against Keras 3's
update formulas, written out in numpy here (keras/src/optimizers/*.py), with the
harness of test_optimizers.py: a linear Dense layer trained with mse on one fixed
batch, whose gradients are analytic, on the native and the reference backend.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from tests.test_optimizers import (B0, BACKENDS, RTOL, ATOL, STEPS, W0, X, Y, NpOptimizer,
                                   NpSGD, assert_weights, f32, make_model, mse_and_grads)


class NpNadam(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2, self.eps = f32(beta_1), f32(beta_2), epsilon
        self.u_product = 1.0

    def u(self, t):
        return self.b1 * (1.0 - 0.5 * 0.96 ** t)

    def apply(self, params, grads):
        # Keras advances the product once per step, before the weights' updates.
        self.u_product *= self.u(self.iterations + 1)
        return super().apply(params, grads)

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        u_t, u_t1 = self.u(t), self.u(t + 1)
        m = self.slot(i, "m", p) + (g - self.slot(i, "m", p)) * (1 - self.b1)
        v = self.slot(i, "v", p) + (g * g - self.slot(i, "v", p)) * (1 - self.b2)
        self.slots[(i, "m")], self.slots[(i, "v")] = m, v
        m_hat = u_t1 * m / (1 - self.u_product * u_t1) + (1 - u_t) * g / (1 - self.u_product)
        v_hat = v / (1 - self.b2 ** t)
        return p - m_hat * lr / (np.sqrt(v_hat) + self.eps)


class NpAdadelta(NpOptimizer):
    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.rho, self.eps = rho, epsilon

    def update(self, i, p, g, lr):
        acc_g = self.rho * self.slot(i, "g", p) + (1 - self.rho) * g * g
        delta = -np.sqrt(self.slot(i, "d", p) + self.eps) * g / np.sqrt(acc_g + self.eps)
        acc_d = self.rho * self.slot(i, "d", p) + (1 - self.rho) * delta * delta
        self.slots[(i, "g")], self.slots[(i, "d")] = acc_g, acc_d
        return p + lr * delta


class NpLion(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2 = beta_1, beta_2

    def update(self, i, p, g, lr):
        m = self.slot(i, "m", p)
        new = p - lr * np.sign(m * self.b1 + g * (1 - self.b1))
        self.slots[(i, "m")] = m * self.b2 + g * (1 - self.b2)
        return new


class NpFtrl(NpOptimizer):
    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, **kw):
        super().__init__(learning_rate, **kw)
        self.power, self.init = -learning_rate_power, initial_accumulator_value
        self.l1, self.l2 = l1_regularization_strength, l2_regularization_strength
        self.shrink, self.beta = l2_shrinkage_regularization_strength, beta

    def update(self, i, p, g, lr):
        acc = self.slot(i, "acc", p, self.init)
        lin = self.slot(i, "lin", p)
        l2 = self.l2 + self.beta / (2.0 * lr)
        new_acc = acc + g * g
        lin = lin + g + 2 * self.shrink * p - (new_acc ** self.power - acc ** self.power) / lr * p
        quadratic = new_acc ** self.power / lr + 2 * l2
        self.slots[(i, "acc")], self.slots[(i, "lin")] = new_acc, lin
        return (np.clip(lin, -self.l1, self.l1) - lin) / quadratic


class NpLamb(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2, self.eps = f32(beta_1), f32(beta_2), epsilon

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        m = self.slot(i, "m", p) + (g - self.slot(i, "m", p)) * (1 - self.b1)
        v = self.slot(i, "v", p) + (g * g - self.slot(i, "v", p)) * (1 - self.b2)
        self.slots[(i, "m")], self.slots[(i, "v")] = m, v
        update = (m / (1 - self.b1 ** t)) / (np.sqrt(v / (1 - self.b2 ** t)) + self.eps)
        w_norm, u_norm = np.linalg.norm(p), np.linalg.norm(update)
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        return p - ratio * lr * update


class NpAdafactor(NpOptimizer):
    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                 clip_threshold=1.0, relative_step=True, **kw):
        super().__init__(learning_rate, **kw)
        self.decay_pow, self.eps1, self.eps2 = beta_2_decay, epsilon_1, epsilon_2
        self.clip_threshold, self.relative = clip_threshold, relative_step

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        if self.relative:
            lr = min(lr, 1 / np.sqrt(t))
        alpha = max(self.eps2, np.sqrt(np.mean(p * p))) * min(lr, 1 / np.sqrt(t))
        g2 = g * g + self.eps1
        beta_2 = 1 - t ** self.decay_pow
        if p.ndim >= 2:         # factored: row and column means of g^2
            r = beta_2 * self.slot(i, "r", p[:, 0]) + (1 - beta_2) * g2.mean(axis=-1)
            c = beta_2 * self.slot(i, "c", p[0]) + (1 - beta_2) * g2.mean(axis=-2)
            self.slots[(i, "r")], self.slots[(i, "c")] = r, c
            v = np.outer(r / r.mean(), c)
        else:
            v = beta_2 * self.slot(i, "v", p) + (1 - beta_2) * g2
            self.slots[(i, "v")] = v
        u = g / np.sqrt(v)
        u_hat = u / max(1.0, np.sqrt(np.mean(u * u)) / self.clip_threshold)
        return p - alpha * u_hat


CASES = [
    ("lamb", lambda: optimizers.Lamb(0.05), lambda: NpLamb(0.05)),
    ("lamb-betas-clipvalue", lambda: optimizers.Lamb(0.05, beta_1=0.7, beta_2=0.8, clipvalue=0.2),
     lambda: NpLamb(0.05, beta_1=0.7, beta_2=0.8, clipvalue=0.2)),
    ("adafactor", lambda: optimizers.Adafactor(0.5), lambda: NpAdafactor(0.5)),
    ("adafactor-default", lambda: optimizers.Adafactor(), lambda: NpAdafactor()),
    ("adafactor-fixed-step", lambda: optimizers.Adafactor(
        0.05, beta_2_decay=-0.5, epsilon_2=1e-2, clip_threshold=0.5, relative_step=False),
     lambda: NpAdafactor(0.05, beta_2_decay=-0.5, epsilon_2=1e-2, clip_threshold=0.5,
                         relative_step=False)),
    ("nadam", lambda: optimizers.Nadam(0.05), lambda: NpNadam(0.05)),
    ("nadam-default", lambda: optimizers.Nadam(), lambda: NpNadam()),
    ("nadam-betas-eps", lambda: optimizers.Nadam(0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-3),
     lambda: NpNadam(0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-3)),
    ("nadam-clipnorm", lambda: optimizers.Nadam(0.05, clipnorm=0.3),
     lambda: NpNadam(0.05, clipnorm=0.3)),
    ("adadelta", lambda: optimizers.Adadelta(1.0), lambda: NpAdadelta(1.0)),
    ("adadelta-rho-eps", lambda: optimizers.Adadelta(0.5, rho=0.8, epsilon=1e-4),
     lambda: NpAdadelta(0.5, rho=0.8, epsilon=1e-4)),
    ("lion", lambda: optimizers.Lion(0.01), lambda: NpLion(0.01)),
    ("lion-betas-decay", lambda: optimizers.Lion(0.01, beta_1=0.5, beta_2=0.7, weight_decay=0.1),
     lambda: NpLion(0.01, beta_1=0.5, beta_2=0.7, weight_decay=0.1)),
    ("ftrl", lambda: optimizers.Ftrl(0.1), lambda: NpFtrl(0.1)),
    ("ftrl-default", lambda: optimizers.Ftrl(), lambda: NpFtrl()),
    ("ftrl-regularized", lambda: optimizers.Ftrl(
        0.1, learning_rate_power=-0.7, initial_accumulator_value=0.5,
        l1_regularization_strength=0.01, l2_regularization_strength=0.02,
        l2_shrinkage_regularization_strength=0.03, beta=0.2),
     lambda: NpFtrl(0.1, learning_rate_power=-0.7, initial_accumulator_value=0.5,
                    l1_regularization_strength=0.01, l2_regularization_strength=0.02,
                    l2_shrinkage_regularization_strength=0.03, beta=0.2)),
    ("ftrl-l1-zeroes", lambda: optimizers.Ftrl(0.1, l1_regularization_strength=5.0),
     lambda: NpFtrl(0.1, l1_regularization_strength=5.0)),
]


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
        params = ref.apply(params, grads)
        np.testing.assert_allclose(loss, want_loss, rtol=RTOL, err_msg=f"{name} loss step {step}")
        assert_weights(model, params, step, name)
    assert np.max(np.abs(params[0] - W0)) > 1e-3
    if name == "ftrl-l1-zeroes":       # a strong L1 term holds weights at exactly 0
        assert np.sum(model.get_weights()[0] == 0) >= 4


# ---------------------------------------------------------------------- moving averages
def ema_reference(make_ref, momentum, overwrite_every, steps):
    """Weights and averages after each step, as Keras: average = m * average +
    (1 - m) * weights with m = 0 at the first step, and every `overwrite_every`-th step
    the weights take the average."""
    ref = make_ref()
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    averages = [np.zeros_like(p) for p in params]
    out = []
    for step in range(steps):
        params = ref.apply(params, mse_and_grads(params)[1])
        m = momentum if step > 0 else 0.0
        averages = [m * a + (1 - m) * p for a, p in zip(averages, params)]
        if overwrite_every and (step + 1) % overwrite_every == 0:
            params = [a.copy() for a in averages]
        out.append((params, averages))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("overwrite", [None, 2])
def test_ema_averages_and_overwrite(backend, overwrite):
    opt = optimizers.SGD(0.1, momentum=0.5, use_ema=True, ema_momentum=0.7,
                         ema_overwrite_frequency=overwrite)
    model = make_model(opt, backend)
    want = ema_reference(lambda: NpSGD(0.1, momentum=0.5), 0.7, overwrite, 5)
    dense = model.layers[0]
    for step, (params, averages) in enumerate(want, start=1):
        model.train_on_batch(X, Y)
        assert_weights(model, params, step, f"ema overwrite={overwrite}")
        got = [opt.slot(w, "_average").numpy() for w in (dense.kernel, dense.bias)]
        for g, a in zip(got, averages):
            np.testing.assert_allclose(g, a, rtol=RTOL, atol=ATOL, err_msg=f"average {step}")
    assert not np.allclose(want[-1][0][0], want[-1][1][0])   # the averages lag the weights


def test_fit_ends_with_the_moving_averages():
    """As Keras, fit() ends by giving the weights their moving averages (train_on_batch
    does not)."""
    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5)
    model = make_model(opt, "native")
    model.fit(X, Y, batch_size=6, epochs=3, shuffle=False, verbose=0)
    want = ema_reference(lambda: NpSGD(0.1), 0.5, None, 3)
    assert_weights(model, want[-1][1], 3, "fit with use_ema")


def test_ema_bad_arguments():
    with pytest.raises(ValueError, match="ema_momentum"):
        optimizers.Adam(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        optimizers.Adam(use_ema=True, ema_overwrite_frequency=-1)


def test_bad_arguments_raise_keras_errors():
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="learning_rate_power"):
        optimizers.Ftrl(learning_rate_power=0.5)
    with pytest.raises(ValueError, match="l1_regularization_strength"):
        optimizers.Ftrl(l1_regularization_strength=-1.0)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optimizers.Ftrl(initial_accumulator_value=-0.1)


@pytest.mark.parametrize("name,cls", [("nadam", optimizers.Nadam),
                                      ("adadelta", optimizers.Adadelta),
                                      ("lion", optimizers.Lion), ("ftrl", optimizers.Ftrl),
                                      ("lamb", optimizers.Lamb),
                                      ("adafactor", optimizers.Adafactor)])
def test_by_name_and_config_round_trip(name, cls):
    opt = optimizers.get(name)
    assert type(opt) is cls and float(opt.learning_rate.numpy()) == pytest.approx(0.001)
    again = optimizers.deserialize(optimizers.serialize(cls(0.02, use_ema=True)))
    assert type(again) is cls and again.use_ema and again.get_config() == \
        cls(0.02, use_ema=True).get_config()


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_nadam_ema_state_saves_and_resumes(tmp_path, fmt):
    """The optimizer-wide u_product of Nadam and the moving averages are optimizer state:
    a model saved mid-training and loaded goes on exactly as the one never saved."""
    def fresh():
        m = models.Sequential([layers.Input((4,)), layers.Dense(3)])
        m.set_weights([W0, B0])
        m.compile(optimizers.Nadam(0.05, use_ema=True, ema_momentum=0.6), "mse")
        return m
    model = fresh()
    for _ in range(2):
        model.train_on_batch(X, Y)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    loaded = models.load_model(path)
    assert type(loaded.optimizer) is optimizers.Nadam and loaded.optimizer.use_ema
    for _ in range(2):
        model.train_on_batch(X, Y)
        loaded.train_on_batch(X, Y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, err_msg=a.path)


def test_swap_ema_weights_evaluates_with_the_averages():
    from kcompile import callbacks
    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5)
    model = make_model(opt, "native")
    for _ in range(3):
        model.train_on_batch(X, Y)
    dense = model.layers[0]
    weights = model.get_weights()
    averages = [opt.slot(w, "_average").numpy().copy() for w in (dense.kernel, dense.bias)]
    assert not np.allclose(weights[0], averages[0])
    at_averages = make_model(optimizers.SGD(0.1), "native")
    at_averages.set_weights(averages)
    want = at_averages.evaluate(X, Y, verbose=0)
    got = model.evaluate(X, Y, verbose=0, callbacks=[callbacks.SwapEMAWeights()])
    assert got == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(model.predict(X, verbose=0, callbacks=[callbacks.SwapEMAWeights()]),
                               at_averages.predict(X, verbose=0), rtol=1e-6)
    for a, b in zip(model.get_weights(), weights):        # swapped back afterwards
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="use_ema=True"):
        make_model(optimizers.SGD(0.1), "native").evaluate(
            X, Y, verbose=0, callbacks=[callbacks.SwapEMAWeights()])


def test_swap_ema_weights_on_epoch_and_in_fit_validation():
    from kcompile import callbacks
    plain = make_model(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), "native")
    plain.fit(X, Y, batch_size=3, epochs=3, shuffle=False, verbose=0)
    swapping = make_model(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), "native")
    history = swapping.fit(X, Y, batch_size=3, epochs=3, shuffle=False, verbose=0,
                           validation_data=(X, Y),
                           callbacks=[callbacks.SwapEMAWeights(swap_on_epoch=True)])
    # the validation of the last epoch saw the weights fit ends with: the averages
    for a, b in zip(swapping.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert history.history["val_loss"][-1] == pytest.approx(
        plain.evaluate(X, Y, verbose=0), rel=1e-5)


# Keras 3's constructor parameters (keras/src/optimizers/*.py), in order, with defaults.
KERAS_OWN_PARAMETERS = {
    optimizers.Nadam: [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999),
                       ("epsilon", 1e-7)],
    optimizers.Adadelta: [("learning_rate", 0.001), ("rho", 0.95), ("epsilon", 1e-7)],
    optimizers.Lion: [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.99)],
    optimizers.Ftrl: [("learning_rate", 0.001), ("learning_rate_power", -0.5),
                      ("initial_accumulator_value", 0.1), ("l1_regularization_strength", 0.0),
                      ("l2_regularization_strength", 0.0),
                      ("l2_shrinkage_regularization_strength", 0.0), ("beta", 0.0)],
    optimizers.Lamb: [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999),
                      ("epsilon", 1e-7)],
    optimizers.Adafactor: [("learning_rate", 0.001), ("beta_2_decay", -0.8),
                           ("epsilon_1", 1e-30), ("epsilon_2", 1e-3), ("clip_threshold", 1.0),
                           ("relative_step", True)],
}
KERAS_COMMON = [("weight_decay", None), ("clipnorm", None), ("clipvalue", None),
                ("global_clipnorm", None), ("use_ema", False), ("ema_momentum", 0.99),
                ("ema_overwrite_frequency", None), ("loss_scale_factor", None),
                ("gradient_accumulation_steps", None), ("name", None)]


@pytest.mark.parametrize("cls", list(KERAS_OWN_PARAMETERS), ids=lambda c: c.__name__)
def test_constructor_parameters_are_keras(cls):
    import inspect
    own = [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()
           if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    assert own == KERAS_OWN_PARAMETERS[cls]
    base = {p.name: p.default for p in inspect.signature(
        optimizers.Optimizer.__init__).parameters.values()}
    for name, default in KERAS_COMMON:
        assert base[name] == default, name
    config = cls(**dict(KERAS_COMMON[:-1])).get_config()
    assert {k for k, _ in KERAS_OWN_PARAMETERS[cls]} <= set(config)
