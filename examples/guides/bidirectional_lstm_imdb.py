"""keras.io example "Bidirectional LSTM on IMDB" (Keras 3), run on kcompile.

The example's code with only the imports changed, and random reviews in place of the
IMDB download: lists of word indices in [1, max_features) of varying lengths, with
0/1 labels, fewer of them, so it runs in seconds. Its prose is left out. The asserts
check the shapes the example's comments state.
"""
import numpy as np
import kcompile as keras
from kcompile import layers

max_features = 20000  # Only consider the top 20k words
maxlen = 200  # Only consider the first 200 words of each movie review

# Input for variable-length sequences of integers
inputs = keras.Input(shape=(None,), dtype="int32")
# Embed each integer in a 128-dimensional vector
x = layers.Embedding(max_features, 128)(inputs)
# Add 2 bidirectional LSTMs
x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
x = layers.Bidirectional(layers.LSTM(64))(x)
# Add a classifier
outputs = layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(inputs, outputs)
model.summary()


# Synthetic reviews in place of keras.datasets.imdb.load_data(num_words=max_features):
# each review a list of word indices (1 is the start mark, as in the dataset).
def synthetic_reviews(n, rng):
    reviews = [
        [1] + rng.integers(2, max_features, size=rng.integers(20, 400)).tolist()
        for _ in range(n)
    ]
    return reviews, rng.integers(0, 2, size=(n,)).astype("int64")


rng = np.random.default_rng(0)
(x_train, y_train), (x_val, y_val) = synthetic_reviews(256, rng), synthetic_reviews(64, rng)
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
# Use pad_sequence to standardize sequence length:
# this will truncate sequences longer than 200 words and zero-pad sequences shorter than 200 words.
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)
assert x_train.shape == (256, maxlen) and x_val.shape == (64, maxlen)

model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=2, validation_data=(x_val, y_val))
