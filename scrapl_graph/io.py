"""Files that are either complete or absent (atomic writes, WAV output), and configs through jsonargparse.

Config files (JSON or YAML) are read by jsonargparse's loaders, and the
``{"class_path": ..., "init_args": {...}}`` specs in them are built with
jsonargparse checking the init_args against the class's signature
(:func:`build_object`): the machinery of the LightningCLI training layer,
so a spec means the same thing in every config of the package.
"""
from __future__ import annotations

import copy
import importlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser, get_loader


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """Write ``obj`` (JSON for ``.json``, else ``torch.save``) atomically and durably (flushed to disk)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if path.endswith(".json"):
                f.write(json.dumps(obj, indent=1, sort_keys=True).encode())
            else:
                torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def write_wav(path: str, audio, sample_rate: int) -> None:
    """Write mono or multichannel audio (channels, samples) or (samples,) as 16-bit PCM, atomically.

    The signal is peak-normalized when it exceeds full scale, so nothing clips.
    """
    from scipy.io import wavfile

    data = audio.detach().cpu().double().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, float)
    if data.ndim == 2:
        data = data.T
    elif data.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {data.shape}")
    peak = np.abs(data).max() if data.size else 0.0
    if peak > 1.0:
        data = data / peak
    pcm = np.round(data * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        wavfile.write(tmp, int(sample_rate), pcm)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


#: jsonargparse loader mode by config file extension.
_CONFIG_MODES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def _config_loader(mode: str):
    """jsonargparse's loader for ``mode``; its YAML one where it has no JSON one (before 4.36): YAML reads JSON."""
    try:
        return get_loader(mode)
    except KeyError:
        return get_loader("yaml")


def _syntax_error(err: Exception, path: str, kind: str) -> ValueError:
    """A JSON or YAML syntax error in one line: the file, the position and the problem."""
    if isinstance(err, json.JSONDecodeError):
        return ValueError(f"{path}: invalid {kind} at line {err.lineno}, column {err.colno}: {err.msg}")
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return ValueError(f"{path}: invalid {kind}: {' '.join(str(err).split())}")
    message = f"{path}: invalid {kind} at line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        message += f" ({context} from line {context_mark.line + 1}, column {context_mark.column + 1})"
    return ValueError(message)


def load_config(path: str) -> Any:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``) config file with jsonargparse's loaders.

    They are the loaders of the training layer's config files; the YAML one
    reads ``1e-3`` as a float (PyYAML alone reads a string) and keeps dates
    as strings.

    Args:
        path: the file.

    Returns:
        Its content: mappings, lists and plain values.

    Raises:
        ValueError: for a missing file, another extension, or a syntax error
            (one line, with its line and column).
    """
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    mode = _CONFIG_MODES.get(os.path.splitext(path)[1].lower())
    if mode is None:
        raise ValueError(f"config {path!r} must be .json, .yaml or .yml")
    with open(path) as f:
        text = f.read()
    try:
        return _config_loader(mode)(text)
    except (yaml.YAMLError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise _syntax_error(err, path, mode.upper()) from None


#: The keys of a class_path spec.
SPEC_KEYS = ("class_path", "init_args")
#: What an alias stands for: a class, an import path, or a spec whose init_args are defaults.
Alias = Union[type, str, Mapping[str, Any]]
_ARG = "object"  # the parser's one group: the class's parameters
# jsonargparse's reference to a parameter ("object.shape") or to the group itself.
_KEY_LINE = re.compile(rf'^Parser key "{_ARG}\.(?P<key>[^"]+)":$')
_ARG_REF = re.compile(rf"\b{_ARG}\.")


def class_path_of(cls: type) -> str:
    """The import path of a class, as a spec's ``class_path``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(class_path: str) -> type:
    """The class ``'package.module.Name'`` (or ``'package.module.Outer.Inner'``) names.

    Raises:
        ValueError: if no module prefix imports or the rest is missing.
        TypeError: if it names something other than a class.
    """
    parts = class_path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and (module_name + ".").startswith(err.name + "."):  # no such module: try a shorter prefix
                continue
            raise ValueError(f"cannot import {class_path!r}: {err}") from None
        except ImportError as err:
            raise ValueError(f"cannot import {class_path!r}: {err}") from None
        for name in parts[split:]:
            if not hasattr(target, name):
                raise ValueError(f"cannot import {class_path!r}: {target.__name__!r} has no attribute {name!r}")
            target = getattr(target, name)
        if not isinstance(target, type):
            raise TypeError(f"{class_path} is a {type(target).__name__}, not a class")
        return target
    raise ValueError(f"cannot import {class_path!r}: No module named {parts[0]!r}")


def _resolve(class_path: str, aliases: Mapping[str, Alias]) -> Tuple[type, Dict[str, Any]]:
    """The class ``class_path`` (an import path or alias) stands for, and its default init_args.

    Raises:
        ValueError: for an unknown name or a class path that cannot be imported.
        TypeError: for a class path or alias that names no class.
    """
    target: Any = aliases.get(class_path)
    defaults: Mapping[str, Any] = {}
    if target is None:
        # A bare name is refused here: jsonargparse resolves one only when some
        # module happens to have imported a class of that name already.
        if "." not in class_path:
            known = f" or one of {sorted(aliases)}" if aliases else ""
            raise ValueError(f"unknown name {class_path!r}; use 'module.Class'{known}")
        target = class_path
    elif isinstance(target, Mapping):
        target, defaults = target["class_path"], target.get("init_args") or {}
    cls = _import_class(target) if isinstance(target, str) else target
    if not isinstance(cls, type):
        raise TypeError(f"{class_path!r} stands for a {type(cls).__name__}, not a class")
    # A copy: the object built may keep (and change) the lists of the alias's defaults.
    return cls, copy.deepcopy(dict(defaults))


def _check_spec(spec: Any, where: str) -> Tuple[str, Mapping[str, Any]]:
    """The ``class_path`` and ``init_args`` of a spec (a mapping or a bare class path), checked for shape."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a class path or a mapping with 'class_path' and optional "
                        f"'init_args', got {type(spec).__name__}")
    if "class_path" not in spec or set(spec) - set(SPEC_KEYS):
        raise ValueError(f"{where}: expected a class path or a mapping with 'class_path' and optional "
                         f"'init_args', got keys {sorted(spec, key=str)}")
    if not isinstance(spec["class_path"], str):
        raise TypeError(f"{where}.class_path must be a string, got {type(spec['class_path']).__name__}")
    init_args = spec.get("init_args")
    if init_args is not None and not isinstance(init_args, Mapping):
        raise TypeError(f"{where}.init_args must be a mapping, got {type(init_args).__name__}")
    return spec["class_path"], init_args or {}


def _build_nested(value: Any, aliases: Mapping[str, Alias], where: str) -> Any:
    """An init_args value with every spec in it (a mapping with ``class_path``) built, at any depth.

    jsonargparse would build these only for parameters typed as a class,
    and for untyped ones (GRAFX's ``DryWet(processor)``) it would pass a
    spec it cannot build on as a plain dict; building them here checks
    every one and names its place in the config.
    """
    if isinstance(value, Mapping) and "class_path" in value:
        return build_object(value, object, where=where, aliases=aliases)
    if isinstance(value, Mapping):
        return {key: _build_nested(item, aliases, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_build_nested(item, aliases, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def _argument_error(err: ArgumentError, where: str, class_path: str) -> TypeError:
    """jsonargparse's message on arguments that do not fit a signature, in one line after their config path."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    key = _KEY_LINE.match(lines[0]) if lines else None
    if key:  # one parameter's problem: its own path
        where, lines = f"{where}.init_args.{key['key']}", lines[1:]
    message = _ARG_REF.sub("init_args.", " ".join(lines)).replace(f"Group '{_ARG}'", class_path)
    return TypeError(f"{where}: {message}" + ("" if class_path in message else f" ({class_path})"))


def _instantiate(cls: type, init_args: Mapping[str, Any], where: str, class_path: str) -> Any:
    """``cls(**init_args)`` through jsonargparse, which checks (and converts) the arguments against the signature."""
    # fail_untyped=False, as LightningCLI has it: untyped parameters take any value.
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(cls, _ARG, fail_untyped=False)
    try:
        # Without jsonargparse's defaults the constructor's own apply: jsonargparse
        # would pass each explicitly, some changed (a callable as its import path).
        config = parser.parse_object({_ARG: dict(init_args)}, env=False, defaults=False)
    except ArgumentError as err:
        raise _argument_error(err, where, class_path) from None
    # ``instantiate`` replaces ``instantiate_classes`` from jsonargparse 4.49 on.
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    try:
        return getattr(instantiate(config), _ARG)
    except (ValueError, TypeError) as err:  # the constructor's: prefixed, of the same kind
        raise (TypeError if isinstance(err, TypeError) else ValueError)(f"{where}: {err}") from err


def build_object(spec: Union[str, Mapping[str, Any]], base: type = torch.nn.Module, *, where: str = "object",
                 aliases: Optional[Mapping[str, Alias]] = None) -> Any:
    """Build an object from a ``class_path`` spec, its init_args checked by jsonargparse against the signature.

    ``spec`` is ``{"class_path": ..., "init_args": {...}}`` (Lightning /
    jsonargparse style) or a bare class path; ``class_path`` is an import
    path or a key of ``aliases``. An init_args value may hold specs (at any
    depth, in lists and mappings too): they are built first, with the same
    aliases. An alias given as a spec supplies default init_args, which the
    spec's own override. jsonargparse then checks the init_args against the
    class's signature (unknown, missing and ill-typed arguments; untyped
    parameters take any value) and calls the class with them; parameters
    not given keep the constructor's defaults.

    Args:
        spec: the spec.
        base: the class the object must be an instance of.
        where: the spec's place in its config (e.g. ``"graph.processors.eq"``),
            at the start of every error message.
        aliases: short name -> class, import path, or spec
            (``{"class_path": ..., "init_args": defaults}``).

    Returns:
        The object.

    Raises:
        ValueError: for a spec with other keys or without ``class_path``, a
            name without a dot that is no alias, a class path that cannot be
            imported, and the constructor's ValueErrors.
        TypeError: for a spec that is no mapping or string, a non-string
            ``class_path``, non-mapping ``init_args``, a class path naming no
            class or a class that is not a subclass of ``base``, init_args
            that do not fit the signature, and the constructor's TypeErrors.
    """
    aliases = aliases or {}
    class_path, init_args = _check_spec(spec, where)
    try:
        cls, args = _resolve(class_path, aliases)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None
    if not issubclass(cls, base):
        base_name = "torch.nn.Module" if base is torch.nn.Module else class_path_of(base)
        raise TypeError(f"{where}: {class_path} is not a subclass of {base_name}")
    args.update(init_args)
    args = {key: _build_nested(value, aliases, f"{where}.init_args.{key}") for key, value in args.items()}
    return _instantiate(cls, args, where, class_path)
