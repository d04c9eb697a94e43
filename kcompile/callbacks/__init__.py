"""`keras.callbacks`: Keras 3's callbacks (names, arguments, defaults and behaviour).

core.py has the base class, the list fit() calls, History, ProgbarLogger and the
monitoring / learning-rate / logging callbacks; one file each for the others.
"""
from .backup_and_restore import BackupAndRestore
from .core import (Callback, CallbackList, CSVLogger, EarlyStopping, History, LambdaCallback,
                   LearningRateScheduler, ModelCheckpoint, MonitorCallback, ProgbarLogger,
                   ReduceLROnPlateau, TerminateOnNaN, pythonify_logs)
from .swap_ema_weights import SwapEMAWeights
from .tensorboard import TensorBoard

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger",
           "TerminateOnNaN", "LambdaCallback", "BackupAndRestore", "TensorBoard", "SwapEMAWeights"]
