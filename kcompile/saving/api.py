"""save_model / load_model / save_weights / load_weights in Keras' file formats.

* `.h5` / `.hdf5`: Keras' legacy HDF5 model file: root attributes `model_config`,
  `training_config`, `keras_version`, `backend`; group `model_weights`; group
  `optimizer_weights`.
* `.keras`: Keras 3's zip of `metadata.json`, `config.json` (with `compile_config`)
  and `model.weights.h5`.
* `.weights.h5`: Keras 3's weights file; `.h5` weights: the legacy layout.

Every file is written to a temporary name beside the target and renamed over it
only when complete, so a failed or interrupted save leaves the old file intact.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import zipfile

import h5py
import numpy as np

from . import files, training
from .model_config import model_from_config, model_to_config
from .safe_mode import safe_mode_scope
from .serialization import custom_object_scope
from .. import subclassed
from .weights import (load_kcompile_state, load_legacy_weights, load_v3_weights,
                      read_named_values, write_kcompile_state, write_legacy_weights,
                      write_named_values, write_v3_weights)

# The Keras version whose formats these files follow (Keras reads it as the writer's).
KERAS_VERSION = "3.0.0"
BACKEND = "kcompile"


def _kcompile_version():
    from .. import __version__
    return __version__


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable: {obj!r}")


def to_json(obj) -> str:
    return json.dumps(obj, default=_json_default)


def _load_json(text, where):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read {where}: it is not valid JSON ({e})") from e


def _compiled(model):
    return bool(getattr(model, "compiled", False)) and getattr(model, "optimizer", None) is not None


# -- whole models ---------------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True, include_optimizer=True, **kwargs):
    """Save architecture, weights, compile settings and optimizer state (`.keras` or `.h5`)."""
    path = os.fspath(filepath)
    if path.endswith(".keras"):
        writer = _write_keras
    elif path.endswith((".h5", ".hdf5")):
        writer = _write_h5
    else:
        raise ValueError(f"Invalid filepath extension for saving: {path!r}. Please add either a "
                         f"`.keras` extension for the native Keras format or a `.h5` extension "
                         f"for the legacy HDF5 format.")
    if kwargs:
        raise TypeError(f"save_model() got unexpected arguments {sorted(kwargs)}")
    if writer is _write_h5 and getattr(model, "_is_subclassed", False):
        raise NotImplementedError(
            "Saving the model to HDF5 format requires the model to be a Functional model or a "
            "Sequential model. It does not work for subclassed models, because such models are "
            "defined via the body of a Python method, which isn't safely serializable. Save "
            "it in the `.keras` format (its get_config() and weights) or use `save_weights()`.")
    with files.atomic_path(path, overwrite) as tmp:
        writer(model, tmp, include_optimizer and _compiled(model))


def _write_h5(model, target, include_optimizer):
    config = model_to_config(model)
    with h5py.File(target, "w") as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["backend"] = BACKEND
        f.attrs["kcompile_version"] = _kcompile_version()
        f.attrs["model_config"] = to_json(config).encode("utf8")
        if include_optimizer:
            f.attrs["training_config"] = to_json(training.training_config(model)).encode("utf8")
        write_legacy_weights(f.create_group("model_weights"), model, KERAS_VERSION, BACKEND)
        write_kcompile_state(f, model)
        if include_optimizer:
            write_named_values(f.create_group("optimizer_weights"),
                               training.optimizer_values(model))


def _write_keras(model, target, include_optimizer):
    config = model_to_config(model)
    shape = getattr(model, "_input_shape", None)
    if shape is not None:
        config["build_config"] = {"input_shape": [None, *shape]}
    if getattr(model, "_is_subclassed", False) and model._subclass_spec is not None:
        config["build_config"] = subclassed.build_config(model)
    if include_optimizer:
        config["compile_config"] = training.compile_config(model)
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "kcompile_version": _kcompile_version(),
                "kcompile": {"backend": getattr(model, "_backend", "native")}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        write_v3_weights(f, model, training.optimizer_values(model) if include_optimizer else None)
        write_kcompile_state(f, model)
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("metadata.json", to_json(metadata))
        zf.writestr("config.json", to_json(config))
        zf.writestr("model.weights.h5", buf.getvalue())


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a `.keras` archive or an HDF5 file written by kcompile or Keras 2/3."""
    path = os.fspath(filepath)
    kind = files.file_kind(path)
    with custom_object_scope(custom_objects), safe_mode_scope(safe_mode):
        if kind == "zip":
            return _read_keras(path, custom_objects, compile)
        return _read_h5(path, custom_objects, compile)


def _read_h5(path, custom_objects, compile):
    with files.read_h5(path) as f:
        raw = files.attr_text(f.attrs.get("model_config"))
        if raw is None:
            if "layer_names" in f.attrs or "layers" in f:
                raise ValueError(f"No model config found in the file at {path}: it holds only "
                                 f"weights; build the model and call model.load_weights() on it")
            raise ValueError(f"No model config found in the file at {path}.")
        model = model_from_config(_load_json(raw, f"the model_config of {path}"), custom_objects)
        if "model_weights" not in f:
            raise ValueError(f"Cannot read {path}: the file has a model config but no "
                             f"'model_weights' group")
        load_legacy_weights(f["model_weights"], model, path, by_name="strict")
        load_kcompile_state(f, model)
        raw_training = files.attr_text(f.attrs.get("training_config"))
        if compile and raw_training is not None:
            tc = _load_json(raw_training, f"the training_config of {path}")
            training.compile_from_config(model, tc, custom_objects)
            if "optimizer_weights" in f:
                values = read_named_values(f["optimizer_weights"])
                training.set_optimizer_state(model, values, path)
    return model


def _read_keras(path, custom_objects, compile):
    with files.read_zip(path) as zf:
        config = _load_json(files.zip_member(zf, "config.json", path), f"{path} (config.json)")
        names = zf.namelist()
        metadata = _load_json(zf.read("metadata.json"), f"{path} (metadata.json)") \
            if "metadata.json" in names else {}
        if "model.weights.npz" in names and "model.weights.h5" not in names:
            raise ValueError(f"Cannot read {path}: its weights are in the .npz format, which "
                             f"kcompile does not read; save it with weights_format='h5'")
        weights = files.zip_member(zf, "model.weights.h5", path)
    model = model_from_config(config, custom_objects)
    if getattr(model, "_is_subclassed", False) and config.get("build_config"):
        subclassed.build_from_config(model, config["build_config"])
    if compile and config.get("compile_config"):
        backend = (metadata.get("kcompile") or {}).get("backend")
        training.compile_from_config(model, config["compile_config"], custom_objects, backend)
    where = f"{path} (model.weights.h5)"
    with files.read_h5(io.BytesIO(weights), where) as f:
        opt_values = load_v3_weights(f, model, where)
        load_kcompile_state(f, model)
    if opt_values and compile and _compiled(model):
        training.set_optimizer_state(model, opt_values, path)
    return model


# -- weights only ---------------------------------------------------------------------------------
def save_weights(model, filepath, overwrite=True):
    """`.weights.h5`: Keras 3 layout (with the optimizer state when compiled);
    `.h5`/`.hdf5`: Keras' legacy layout (layer weights only)."""
    path = os.fspath(filepath)
    if path.endswith(".weights.h5"):
        def writer(target):
            pairs = training.optimizer_values(model) if _compiled(model) else None
            with h5py.File(target, "w") as f:
                write_v3_weights(f, model, pairs)
                write_kcompile_state(f, model)
    elif path.endswith((".h5", ".hdf5")):
        def writer(target):
            with h5py.File(target, "w") as f:
                write_legacy_weights(f, model, KERAS_VERSION, BACKEND)
                write_kcompile_state(f, model)
    else:
        raise ValueError(f"The filename must end in `.weights.h5` (or `.h5` for Keras' legacy "
                         f"HDF5 layout). Received: filepath={path}")
    with files.atomic_path(path, overwrite) as tmp:
        writer(tmp)


def load_weights(model, filepath, skip_mismatch=False, by_name=False):
    """Weights (and, from a Keras 3 file, the optimizer state) from `.weights.h5`,
    `.h5` (weights or a whole model) or `.keras`."""
    path = os.fspath(filepath)
    kind = files.file_kind(path)
    source, where = path, path
    if kind == "zip":
        with files.read_zip(path) as zf:
            source = io.BytesIO(files.zip_member(zf, "model.weights.h5", path))
        where = f"{path} (model.weights.h5)"
    with files.read_h5(source, where) as f:
        if "layer_names" in f.attrs or "model_weights" in f:
            group = f if "layer_names" in f.attrs else f["model_weights"]
            load_legacy_weights(group, model, where, by_name=by_name, skip_mismatch=skip_mismatch)
            load_kcompile_state(f, model)
            return
        if not any(k in f for k in ("layers", "vars", "_layer_checkpoint_dependencies")):
            raise ValueError(f"Cannot read {where}: it holds no model weights in a layout "
                             f"kcompile knows (groups: {list(f.keys())})")
        if by_name:
            raise ValueError("Loading weights by name is only supported for the legacy "
                             ".h5 layout, not for .weights.h5 / .keras files")
        opt_values = load_v3_weights(f, model, where, skip_mismatch)
        load_kcompile_state(f, model)
    if opt_values and _compiled(model):
        training.set_optimizer_state(model, opt_values, path)
