"""The IMDB review classifier of "The Keras Way": Embedding -> LSTM -> Dense, compiled.

Uses the real IMDB data when kcompile.datasets.imdb can load it (cached, or
downloadable); otherwise says so and trains on generated data of the same shape.
"""
import time

import numpy as np

from kcompile import callbacks, layers, models
from kcompile.utils import pad_sequences

NUM_WORDS, MAXLEN = 5000, 200


def load():
    try:
        from kcompile.datasets import imdb
        (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=NUM_WORDS)
        return (x_train, y_train), (x_test, y_test), "IMDB"
    except Exception as e:       # offline and not cached
        print(f"IMDB not available ({e}); using generated reviews of the same shape")
    rng = np.random.default_rng(0)

    def reviews(n):
        # Positive reviews use more words from the upper half of the vocabulary.
        y = rng.integers(0, 2, n)
        lengths = rng.integers(50, 400, n)
        xs = [list(rng.integers(4, NUM_WORDS // 2, L) + (rng.random(L) < 0.3 * yy) * (NUM_WORDS // 2 - 4))
              for L, yy in zip(lengths, y)]
        return xs, y
    return reviews(5000), reviews(1000), "generated"


def main(epochs=3):
    (x_train, y_train), (x_test, y_test), source = load()
    x_train = pad_sequences(x_train, maxlen=MAXLEN)
    x_test = pad_sequences(x_test, maxlen=MAXLEN)
    print(f"{source}: {len(x_train)} train and {len(x_test)} test sequences of {MAXLEN} ids")

    model = models.Sequential()
    model.add(layers.Embedding(NUM_WORDS, 64, input_length=MAXLEN))
    model.add(layers.LSTM(100))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    stop = callbacks.EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True)
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, validation_split=0.2,
              callbacks=[stop], verbose=2)
    print(f"training took {time.perf_counter() - t0:.1f} s "
          f"(compile {model.compile_time * 1e3:.0f} ms)")
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
