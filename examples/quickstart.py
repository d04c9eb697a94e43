"""The seed example of "The Keras Way", compiled by kcompile.

Data: the 8x8 handwritten digits that ship with scikit-learn, scaled up to
28x28 = 784 pixels, when scikit-learn is installed (no download needed);
otherwise generated digit-like images of the same shape.
"""
import time

import numpy as np

from kcompile import layers, models
from kcompile.utils import to_categorical


def load_digits_784():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    d = load_digits()
    imgs = np.kron(d.images, np.ones((3, 3)))              # 8x8 -> 24x24
    imgs = np.pad(imgs, ((0, 0), (2, 2), (2, 2))) / 16.0   # -> 28x28 in [0, 1]
    return imgs.reshape(len(imgs), 784).astype("float32"), d.target, "scikit-learn digits (real)"


def generated_digits(n=6000, seed=0):
    """Ten fixed random stroke templates, shifted by a pixel and heavily noised."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) < 0.15).astype("float32")
    labels = rng.integers(0, 10, n)
    imgs = templates[labels]
    shifts = rng.integers(-1, 2, (n, 2))
    imgs = np.stack([np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(imgs, shifts)])
    imgs = np.clip(imgs + rng.normal(0, 0.8, imgs.shape), 0, 1)
    return imgs.reshape(n, 784).astype("float32"), labels, "generated digit-like images"


def build():
    """The seed model, compiled (also what `kcompile inspect examples/quickstart.py:build` shows)."""
    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(784,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def main():
    x, labels, source = load_digits_784() or generated_digits()
    y = to_categorical(labels, 10)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_train, n_val = int(0.7 * len(x)), int(0.15 * len(x))
    x_train, y_train = x[:n_train], y[:n_train]
    x_val, y_val = x[n_train:n_train + n_val], y[n_train:n_train + n_val]
    x_test, y_test = x[n_train + n_val:], y[n_train + n_val:]
    print(f"data: {source}: {len(x_train)} train, {len(x_val)} validation, {len(x_test)} test")

    model = build()
    model.summary()

    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=10, batch_size=32, validation_data=(x_val, y_val),
                        verbose=2)
    fit_seconds = time.perf_counter() - t0
    score = model.evaluate(x_test, y_test, verbose=0)
    predictions = model.predict(x_test[:5], verbose=0)

    print(f"compile time (train_step + eval_step + predict, one native module): "
          f"{model.compile_time * 1e3:.0f} ms")
    print(f"fit: {fit_seconds:.2f} s for 10 epochs (compilation included)")
    print(f"test loss {score[0]:.4f}, test accuracy {score[1]:.4f}")
    print("predicted classes of 5 test images:", predictions.argmax(axis=1).tolist(),
          "true:", y_test[:5].argmax(axis=1).tolist())
    print("final validation accuracy:", round(history.history["val_accuracy"][-1], 4))


if __name__ == "__main__":
    main()
