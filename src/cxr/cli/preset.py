"""`cxr preset NAME [--set KEY=VALUE ...]`: a documented preset applied to params.yaml, changing only its keys.

A preset (presets/NAME.yaml) gives dotted keys, after those of the preset it names as `base`. Each key must
exist in params.yaml, or be a new entry of a section keyed by names (a source, a dataset, a model...); a
misspelt one is refused with the nearest valid key. The edit is made in the text: every line of params.yaml
the keys do not cover stays as it was (comments, number spelling, flow or block style). Generators whose files
no source reads any more are dropped. The result must pass `cxr check` (cxr.cli.check) before it replaces
params.yaml; otherwise params.yaml is left untouched and every problem is named.
"""

from __future__ import annotations

import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from cxr.cli.check import NAMED_SECTIONS, pipeline_problems, section_schemas, unused_generators
from cxr.io.files import atomic_path
from cxr.params import PARAMS_FILE, ParamsError, load_params, read_params_file

PRESETS_DIR = Path("presets")
FLOW_WIDTH = 100  # a mapping or list up to this long is written on one line, as params.yaml writes its own


class PresetError(ValueError):
    """The preset or a --set cannot be applied; params.yaml was not changed."""


def list_presets() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def preset_changes(name: str, presets: list[str]) -> dict[str, Any]:
    """A preset's dotted keys, after those of the preset it names as `base` (one place for shared settings)."""
    path = PRESETS_DIR / f"{name}.yaml"
    try:
        changes = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PresetError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(changes, dict):
        raise PresetError(f"{path} must be a mapping of dotted keys to values")
    changes = dict(changes)
    base = changes.pop("base", None)
    if base is None:
        return changes
    if base not in presets or base == name:
        raise PresetError(f"preset {name!r} has base {base!r}, which is no other preset in {PRESETS_DIR}/")
    return {**preset_changes(base, presets), **changes}


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs, each VALUE read as YAML (3, 1e-3, [a, b], null, text)."""
    changes = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise PresetError(f"--set {setting!r}: expected KEY=VALUE, e.g. train.epochs=3")
        try:
            changes[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise PresetError(f"--set {setting!r}: the value is not valid YAML ({' '.join(str(err).split())})") from None
    return changes


def apply_changes(params: dict, changes: dict[str, Any]) -> tuple[dict, dict[str, Any]]:
    """The params with `changes` applied and unused generators dropped, and every key that changed with its new
    value (None for a dropped entry). An unknown key raises PresetError naming the nearest valid one."""
    result = copy.deepcopy(params)
    changed: dict[str, Any] = {}
    for key, value in changes.items():
        parts = key.split(".")
        if not all(parts):
            raise PresetError(f"{key!r} is no dotted key (an empty name between dots)")
        node = result
        for depth, part in enumerate(parts):
            known = isinstance(node, dict) and part in node
            is_last = depth == len(parts) - 1
            new_entry = isinstance(node, dict) and depth == 1 and parts[0] in NAMED_SECTIONS
            if not known and not (is_last and new_entry):
                raise PresetError(f"unknown key {key!r}" + _nearest(parts, depth, node))
            if is_last:
                if not known or node[part] != value:
                    node[part] = value
                    changed[key] = value
            else:
                node = node[part]
    for key in unused_generators(result):
        section, name = key.split(".")
        del result[section][name]
        # An emptied section is written `{}`: DVC then fans its stage out over nothing.
        changed[section if not result[section] else key] = result[section] if not result[section] else None
    return result, changed


def _nearest(parts: list[str], depth: int, node: Any) -> str:
    prefix = ".".join(parts[:depth])
    if not isinstance(node, dict):
        return f": {prefix} is a value, not a section"
    close = difflib.get_close_matches(parts[depth], [str(k) for k in node], n=1, cutoff=0.5)
    where = f" in {prefix}" if prefix else ""
    if close:
        return f"; did you mean {'.'.join([*parts[:depth], close[0]])!r}?"
    return f": no {parts[depth]!r}{where} (there are: {', '.join(map(str, node)) or 'none'})"


# --- editing the text ----------------------------------------------------------------------------------------

def flow(value: Any) -> str:
    """A value as YAML on one line: 3, null, data/raw/x.zip, [a, b], {source: x, view: full}."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def emit(key: str, value: Any, indent: int) -> list[str]:
    """`key: value` as params.yaml writes it: short values on one line, longer mappings and lists as blocks."""
    pad = " " * indent
    one_line = f"{pad}{key}: {flow(value)}"
    # Lists of mappings are blocks of one-line items, as params.yaml writes cross_tests.
    entries = isinstance(value, list) and any(isinstance(item, dict) for item in value)
    if not isinstance(value, (dict, list)) or not value or (len(one_line) <= FLOW_WIDTH and not entries):
        return [one_line]
    lines = [f"{pad}{key}:"]
    if isinstance(value, dict):
        for child, child_value in value.items():
            lines += emit(str(child), child_value, indent + 2)
    else:
        lines += [f"{pad}  - {flow(item)}" for item in value]
    return lines


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _find(lines: list[str], parts: list[str]) -> tuple[int, int] | None:
    """(line, column) of the block key `parts` in the text, or None (not there, or inside a flow mapping)."""
    start, end, column = 0, len(lines), 0
    found = None
    for part in parts:
        found = None
        child_column = None
        for number in range(start, end):
            line = lines[number]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if _indent(line) < column:
                break
            if child_column is None:
                child_column = _indent(line)
            if _indent(line) == child_column and _key_of(line) == part:
                found = (number, child_column)
                break
        if found is None:
            return None
        start, column = found[0] + 1, found[1] + 1
        end = _extent_end(lines, *found)
    return found


def _key_of(line: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(("-", "#")) or ":" not in stripped:
        return None
    key = stripped.split(":", 1)[0].strip()
    return key.strip("'\"")


def _extent_end(lines: list[str], number: int, column: int) -> int:
    """One past the last line of the value of the key at (number, column); trailing blank lines excluded."""
    end = number + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > column):
        end += 1
    while end > number + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def _inline_comment(line: str) -> str:
    """The ` # ...` at the end of a one-line value, with the spaces before it (quotes taken into account)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and index and line[index - 1] in " \t":
            return line[len(line[:index].rstrip()):]
    return ""


def edit_text(text: str, params: dict, changed: dict[str, Any]) -> str:
    """The params.yaml text with each changed key rewritten in place, every other line kept as it was.

    A key inside a one-line (flow) value rewrites that value whole; a new entry of a block section is appended
    at its end; a dropped entry's lines are removed.
    """
    lines = text.splitlines()
    for key in changed:
        parts = key.split(".")
        depth = len(parts)
        while depth and _find(lines, parts[:depth]) is None:
            depth -= 1
        if depth == 0:
            raise PresetError(f"cannot find {parts[0]!r} in the text of params.yaml")
        number, column = _find(lines, parts[:depth])
        end = _extent_end(lines, number, column)
        block = not _value_text(lines[number])
        if depth < len(parts) and block:  # a new entry of a block section
            children = [line for line in lines[number + 1:end] if line.strip() and not line.lstrip().startswith("#")]
            child_column = _indent(children[0]) if children else column + 2
            lines[end:end] = emit(parts[depth], _value(params, parts[:depth + 1]), child_column)
            continue
        if depth == len(parts) and not _has(params, parts):  # a dropped entry
            del lines[number:end]
            continue
        comment = _inline_comment(lines[number]) if end == number + 1 else ""
        new = emit(_key_text(lines[number]), _value(params, parts[:depth]), column)
        if len(new) == 1 and comment:
            # The comment stays where it was when the new value leaves room for it.
            new[0] = new[0].ljust(len(lines[number]) - len(comment)) + comment
        lines[number:end] = new
    return "\n".join(lines) + "\n"


def _key_text(line: str) -> str:
    return line.strip().split(":", 1)[0]


def _value_text(line: str) -> str:
    """What follows `key:` on the key's line, comment left out."""
    rest = line.split(":", 1)[1]
    return rest[:len(rest) - len(_inline_comment(rest))].strip()


def _value(params: dict, parts: list[str]) -> Any:
    node: Any = params
    for part in parts:
        node = node[part]
    return node


def _has(params: dict, parts: list[str]) -> bool:
    try:
        _value(params, parts)
    except (KeyError, TypeError):
        return False
    return True


def run_preset(name: str | None, settings: list[str]) -> int:
    presets = list_presets()
    if not PRESETS_DIR.is_dir() or not PARAMS_FILE.exists():
        print(f"error: no {PRESETS_DIR}/ or {PARAMS_FILE} here: run `cxr preset` in the repository's root folder",
              file=sys.stderr)
        return 2
    if name is None:
        for preset in presets:
            first = (PRESETS_DIR / f"{preset}.yaml").read_text().splitlines()[0].lstrip("# ")
            print(f"{preset}: {first}")
        return 0
    if name not in presets:
        print(f"error: no preset {name!r} in {PRESETS_DIR}/ (there are: {', '.join(presets) or 'none'})", file=sys.stderr)
        return 2
    try:
        params = read_params_file(PARAMS_FILE)
        changes = {**preset_changes(name, presets), **parse_settings(settings)}
        result, changed = apply_changes(params, changes)
        text = edit_text(PARAMS_FILE.read_text(encoding="utf-8"), result, changed)
        with atomic_path(PARAMS_FILE) as tmp:
            tmp.write_text(text, encoding="utf-8")
            problems = _problems(tmp, result)
            if problems:
                raise PresetError("the result would not be a runnable pipeline, so params.yaml is unchanged:\n"
                                  + "\n".join(problems))
    except (PresetError, ParamsError) as err:
        print(f"error: preset {name}: {err}", file=sys.stderr)
        return 2
    print(f"{PARAMS_FILE}: applied preset {name}: {len(changed)} keys changed"
          + ("" if changed else " (it already had these values)"))
    for key, value in changed.items():
        dropped = key.split(".")[0] in ("generate", "generate_radiography") and key not in changes
        shown = "dropped (no source reads its files)" if dropped else flow(value)
        print(f"  {key}: {shown if len(shown) <= FLOW_WIDTH else shown[:FLOW_WIDTH - 3] + '...'}")
    print("check with `git diff params.yaml`, then `dvc repro`")
    return 0


def _problems(path: Path, result: dict) -> list[str]:
    """What `cxr check` would say of the written file, raw paths aside: the data may come after the preset."""
    try:
        written = read_params_file(path)
        if written != result:
            return [f"  - the edited text reads back differently from the intended params (please report this): "
                    f"{sorted(k for k in result if written.get(k) != result[k])}"]
        load_params(section_schemas(written), path)
    except ParamsError as err:
        return str(err).splitlines()[1:] or [str(err)]
    return [line for line in pipeline_problems(written, path.parent) if ".path:" not in line]
