"""Reading the YAML users write (run configs, ``--set`` values): the one loader every such read goes through.

Stricter than ``yaml.safe_load`` where YAML's leniency hides mistakes or costs the machine:

* a key given twice in one mapping is an error naming both lines (``safe_load`` keeps the last value);
* aliases may not expand the document beyond :data:`MAX_EXPANDED_VALUES` values (a kilobyte-sized
  "billion laughs" file otherwise expands to millions, and so does any message that quotes it);
* nesting too deep for Python's recursion is a clear error, not a ``RecursionError``.

:func:`read_yaml` / :func:`parse_yaml` also map every key path to the line it is written on, so a config error
can name it; :func:`load_yaml` gives the content alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, short_repr

# Values (scalars, lists, mappings) of the document once every alias is expanded. A run config holds a few
# hundred; aliases that re-use a section a few times stay far below.
MAX_EXPANDED_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class YamlDocument:
    data: Any
    # key path (mapping keys and list indices, as strings) -> 1-based line where that key or item is written
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)


class _Refused(yaml.MarkedYAMLError):
    """A document that parses but that pivotune will not construct (duplicate key, alias bomb)."""


def _walk(loader: yaml.SafeLoader, root: yaml.Node) -> dict[tuple[str, ...], int]:
    """Check duplicate keys and the alias-expanded size; return the key-path -> line map.

    Iterative (a stack, not recursion), and an aliased node is walked once however often it is used."""
    lines: dict[tuple[str, ...], int] = {}
    sizes: dict[int, int] = {}          # id(node) -> expanded value count, once known
    walked: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        key = id(node)
        if done:                        # children sized: this node's expanded size
            kids = _children(node)
            sizes[key] = 1 + sum(sizes.get(id(c), 0) for _, c, _ in kids)
            if sizes[key] > MAX_EXPANDED_VALUES:
                raise _Refused(None, None, f"aliases expand this document to more than {MAX_EXPANDED_VALUES:,} "
                               "values (a YAML 'billion laughs'?); write the values out or use fewer aliases",
                               node.start_mark)
            continue
        if key in walked:
            if key not in sizes:
                raise _Refused(None, None, "an alias refers to a collection that contains it (a recursive "
                               "alias); write the value out instead", node.start_mark)
            continue
        walked.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(loader, node)
        stack.append((node, path, True))
        for name, child, line in _children(node):
            sub = (*path, name) if name is not None else path
            if name is not None:
                lines.setdefault(sub, line)
            stack.append((child, sub, False))
    return lines


def _children(node: yaml.Node) -> list[tuple[str | None, yaml.Node, int]]:
    """(name in the key path or None, child node, line) for each node below ``node``: list items by index,
    mapping values by their key (on the key's line), the key nodes themselves unnamed."""
    if isinstance(node, yaml.SequenceNode):
        return [(str(i), item, item.start_mark.line + 1) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out = []
        for k, v in node.value:
            name = str(k.value) if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG else None
            out += [(None, k, 0), (name, v, k.start_mark.line + 1)]
        return out
    return []


def _check_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    seen: dict[Any, yaml.Node] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == _MERGE_TAG:
            continue                    # merge keys ('<<') may be overridden by the keys beside them
        value = loader.construct_object(k)
        try:
            first = seen.setdefault(value, k)
        except TypeError:               # an unhashable key: the constructor reports it
            continue
        if first is not k:
            raise _Refused(None, None, f"key {short_repr(value, 60)} appears twice in one mapping (first on line "
                           f"{first.start_mark.line + 1}); YAML would silently keep only the last value. Keep one",
                           k.start_mark)


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse ``text`` (one document); ``source`` ("Config file run.yaml") begins every error message."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None)
        lines = _walk(loader, node)
        return YamlDocument(loader.construct_document(node), lines)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or e
        if isinstance(e, _Refused):
            raise ConfigError(f"{source}{where}: {problem}.") from None
        raise ConfigError(f"{source}{where}: not valid YAML ({problem}).") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML (lists or mappings nested too deeply to read; a config "
                          "needs a few levels).") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str = "Config file") -> YamlDocument:
    """The YAML file ``path`` parsed (content and key lines); every problem is a :class:`ConfigError`
    naming it (``what`` says what the file is)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid UTF-8 (byte {e.start}).") from None
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be read: {e.strerror or e}.") from None
    return parse_yaml(text, f"{what} {path}")


def load_yaml(path: str | Path, what: str = "Config file") -> Any:
    """The content of the YAML file ``path`` (:func:`read_yaml`)."""
    return read_yaml(path, what).data
