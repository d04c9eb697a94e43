"""SwapEMAWeights: evaluate and predict with the moving averages of the weights
(optimizers with use_ema=True), as keras.callbacks.SwapEMAWeights does.

Before evaluation or prediction the model's weights and the optimizer's averages
trade places, and trade back after, so training goes on from its own weights. With
swap_on_epoch=True the averages are in the model from each epoch's end to the next
epoch's start (so ModelCheckpoint and other end-of-epoch callbacks listed after this
one see them), and after the last epoch they stay.
"""
from __future__ import annotations

from .core import Callback


class SwapEMAWeights(Callback):
    def __init__(self, swap_on_epoch=False):
        super().__init__()
        self.swap_on_epoch = swap_on_epoch
        self._ema_weights_in_model = False

    def _pairs(self):
        optimizer = self.model.optimizer
        if not getattr(optimizer, "use_ema", False):
            raise ValueError(f"SwapEMAWeights must be used when `use_ema=True` is set on the "
                             f"optimizer. Received: use_ema="
                             f"{getattr(optimizer, 'use_ema', False)}")
        optimizer.build(self.model.trainable_weights)
        return [(w, optimizer.slot(w, "_average")) for w in self.model.trainable_weights]

    def _swap_variables(self):
        for weight, average in self._pairs():
            held = weight.numpy().copy()
            weight.assign(average.numpy())
            average.assign(held)

    def _finalize_ema_values(self):
        # The averages now in the model stay: fit's closing step (weights <- averages)
        # must find the same values.
        for weight, average in self._pairs():
            average.assign(weight.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True
            if epoch == self.params["epochs"] - 1:
                self._finalize_ema_values()

    def on_test_begin(self, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def on_test_end(self, logs=None):
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    on_predict_begin = on_test_begin
    on_predict_end = on_test_end
