"""Griffe extension for the documentation site (loaded by ``mkdocs.yml``).

Two jobs, both on the package tree Griffe builds before mkdocstrings renders it:

1. **A public object without a docstring is a warning**, which ``mkdocs build --strict`` turns
   into a failure. The objects checked are those the API pages render: every ``::: path`` line
   of the Markdown files under ``api_pages``; for a module, its docstring and every name in its
   ``__all__``; for a class, its public methods and properties defined in the class itself. A
   method that overrides a documented method of a base class (``forward`` of ``nn.Module``,
   ``state_dict`` of ``torch.optim.Optimizer``, a documented base in wideflat) inherits that
   documentation and passes. Dataclass fields and class constants are documented in their
   class's docstring and are not checked one by one.
2. **wideflat's docstring habits read as Griffe's Google style** (the source is not changed):
   Sphinx roles (``:class:`~wideflat.optim.EntropySGD```) become code spans, a
   reStructuredText literal-block marker (``text::``) a colon; ``Example:`` is the
   ``Examples:`` section (doctests shown as code); an entry naming several parameters or
   attributes (``momentum, dampening: SGD settings``) becomes one entry per name with the
   shared description, so each name is still checked against the signature; a paragraph
   closing a ``Raises:`` section that is not an ``Error: description`` entry is shown after
   it; and a ``Returns:``/``Yields:`` description that goes on at the same indent stays one
   value (Griffe would start a new one per line).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`([^`]+)`")
_IDENTIFIER = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)


def _role_to_code(match: re.Match[str]) -> str:
    target = match.group(1)
    explicit = re.fullmatch(r"(.+?)\s*<[^>]+>", target)  # :func:`text <target>`
    if explicit:
        return f"`{explicit.group(1)}`"
    if target.startswith("~"):  # :class:`~a.b.C` shows C
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target.lstrip('.')}`"


_HEADER = re.compile(r"^([ \t]*)([A-Za-z][A-Za-z ]*):[ \t]*$")
_ENTRY_SECTIONS = {
    *("args", "arguments", "params", "parameters", "attributes"),
    *("keyword args", "keyword arguments", "other args", "other arguments", "other params"),
    "other parameters",
}
_RAISES_SECTIONS = {"raises", "exceptions"}
_RETURNS_SECTIONS = {"returns", "yields"}
_NAMES = r"[\w*]+(?:[ \t]*,[ \t]*[\w*]+)"
_GROUPED = re.compile(rf"^([ \t]*)({_NAMES}+)[ \t]*:(.*)$")  # two names or more
_NAMES_ONLY = re.compile(rf"^[ \t]*{_NAMES}*,[ \t]*$")  # a list of names that goes on
_EXCEPTION = re.compile(r"^[ \t]*[\w.]+[ \t]*(?:\([^)]*\))?:(?:[ \t]|$)")
_NAMED = re.compile(r"^[ \t]*[A-Za-z_]\w*[ \t]*(?:\([^)]*\))?:(?:[ \t]|$)")  # name (type): ...


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _section_body(lines: list[str], start: int, indent: int) -> int:
    """End (exclusive) of the section whose header line is ``start - 1``, at ``indent``."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def _items(body: list[str]) -> list[list[str]]:
    """The section's entries: a line at the entries' indent and the lines below it."""
    first = next((line for line in body if line.strip()), "")
    items: list[list[str]] = []
    for line in body:
        if line.strip() and _indent(line) == _indent(first) or not items:
            items.append([line])
        else:
            items[-1].append(line)
    return items


def _entries(body: list[str], title: str, header_indent: int) -> list[str]:
    out: list[str] = []
    items = _items(body)
    k = 0
    while k < len(items):
        item = items[k]
        head = item[0]
        if title in _ENTRY_SECTIONS and _NAMES_ONLY.match(head) and k + 1 < len(items):
            # ``a, b,`` / ``c: description``: one list of names over two lines
            item = [head.rstrip() + " " + items[k + 1][0].strip(), *items[k + 1][1:]]
            head, k = item[0], k + 1
        grouped = _GROUPED.match(head) if title in _ENTRY_SECTIONS else None
        if grouped:
            lead, names, rest = grouped.groups()
            for name in re.split(r"[ \t]*,[ \t]*", names):
                out += [f"{lead}{name}:{rest}", *item[1:]]
        elif title in _RETURNS_SECTIONS and out and head.strip() and not _NAMED.match(head):
            out += ["    " + line if line.strip() else line for line in item]  # goes on
        elif title in _RAISES_SECTIONS and head.strip() and not _EXCEPTION.match(head):
            # a closing note, not an entry: shown as a paragraph after the section
            cut = _indent(head) - header_indent
            rest = [line[cut:] if line.strip() else "" for items_ in items[k:] for line in items_]
            while out and not out[-1].strip():
                out.pop()
            return [*out, "", *rest]
        else:
            out += item
        k += 1
    return out


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` rewritten for Griffe's Google parser and Markdown (see above)."""
    text = _ROLE.sub(_role_to_code, text)
    text = re.sub(r"^[ \t]*\.\. math::[ \t]*$", "", text, flags=re.M)
    text = re.sub(r"^[ \t]*::[ \t]*$", "", text, flags=re.M)
    text = re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.M)
    text = re.sub(r"^([ \t]*)Example:[ \t]*$", r"\1Examples:", text, flags=re.M)
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        header = _HEADER.match(lines[i])
        out.append(lines[i])
        i += 1
        title = header.group(2).lower() if header else ""
        if title in _ENTRY_SECTIONS | _RAISES_SECTIONS | _RETURNS_SECTIONS:
            indent = len(header.group(1).expandtabs())
            end = _section_body(lines, i, indent)
            out += _entries(lines[i:end], title, indent)
            i = end
    return "\n".join(out)


def _documented(obj: griffe.Object | griffe.Alias) -> bool:
    return bool(obj.docstring and obj.docstring.value.strip())


def _external_doc(path: str, name: str) -> bool:
    """Whether the external class at dotted ``path`` has a documented attribute ``name``."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
            for part in parts[cut:]:
                value = getattr(value, part)
        except (ImportError, AttributeError):
            continue
        return bool(getattr(getattr(value, name, None), "__doc__", None))
    return False


def _inherits_doc(cls: griffe.Class, name: str) -> bool:
    """Whether a base class of ``cls`` documents a member ``name``."""
    try:
        ancestors = [cls, *cls.mro()]
    except Exception:  # an unresolvable base: look at the class's own base expressions only
        ancestors = [cls]
    for ancestor in ancestors:
        if ancestor is not cls and name in ancestor.members:
            member = ancestor.members[name]
            if not member.is_alias and _documented(member):
                return True
        for base in ancestor.bases:
            path = getattr(base, "canonical_path", str(base))
            if not path.startswith("wideflat") and _external_doc(path, name):
                return True
    return False


class RequireDocstrings(griffe.Extension):
    """Warn about undocumented public objects on the API pages; rewrite Sphinx roles."""

    def __init__(self, api_pages: str | None = None) -> None:
        """``api_pages``: the folder of API pages (default: ``api/`` beside this file)."""
        self.api_pages = Path(api_pages) if api_pages else Path(__file__).parent / "api"

    def identifiers(self) -> list[str]:
        """The ``::: path`` identifiers of the API pages, in file and line order."""
        pages = sorted(self.api_pages.rglob("*.md"))
        return [m.group(1) for page in pages for m in _IDENTIFIER.finditer(page.read_text())]

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite every docstring of ``pkg``, then check the API pages' objects in it."""
        self._rewrite(pkg)
        for identifier in self.identifiers():
            if identifier.split(".")[0] == pkg.name:
                for path in self._missing(loader.modules_collection[identifier]):
                    griffe.logger.warning(f"{path}: public object without a docstring")

    def _rewrite(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member)

    def _missing(self, obj: griffe.Object | griffe.Alias) -> list[str]:
        obj = obj.final_target if obj.is_alias else obj
        missing = [] if _documented(obj) else [obj.path]
        if obj.is_module:
            for name in obj.exports or ():
                export = self._export(obj, str(name))
                if export is None:
                    missing.append(f"{obj.path}.{name} (named in __all__, defined nowhere)")
                else:
                    missing += self._missing(export)
        elif obj.is_class:
            for name, member in obj.members.items():
                if name.startswith("_") or member.is_alias:
                    continue
                is_method = member.is_function or "property" in member.labels
                if is_method and not _documented(member) and not _inherits_doc(obj, name):
                    missing.append(member.path)
        return missing

    @staticmethod
    def _export(module: griffe.Module, name: str) -> griffe.Object | griffe.Alias | None:
        """Member ``name`` of ``module``, or, for a lazily imported export (a module
        ``__getattr__``), the one top-level definition of that name in its submodules."""
        if name in module.members:
            return module.members[name]
        found = [
            sub.members[name]
            for sub in module.modules.values()
            if name in sub.members and not sub.members[name].is_alias
        ]
        return found[0] if len(found) == 1 else None
