"""Where enrollment jobs come from: a folder of person folders, a CSV manifest, or a file list.

Each source returns EnrollInputs: JobSpecs with absolute paths for the files worth
queueing, and a row for every other entry it met (skipped or failed, with the reason),
so a report accounts for everything under a folder. Only the first bytes of files
without an image suffix are read here, so queuing tens of thousands of files is quick.

What counts toward exit 5 (failed): entries that were meant to be photos and cannot be
read — an unreadable folder, a broken or looping symbolic link, a bad manifest row.
Skipped (no exit 5): hidden entries, files that are not images (Thumbs.db, notes.txt),
FIFOs, devices and sockets, and files outside any person folder.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from identity.errors import IdentityError, InvalidArgument
from identity.faces.images import looks_like_image
from identity.pathnames import fs_path, path_text
from identity.store.sql.jobs import JobSpec
from identity.store.sql.persons import check_display_name, check_external_id

MANIFEST_REQUIRED = ("path", "external_id")
MANIFEST_KNOWN = MANIFEST_REQUIRED + ("display_name",)
LAYOUTS = "--person-from top (each top folder is one person), leaf (the folder holding the photo) or depth:N"


@dataclass(frozen=True)
class PersonFrom:
    """Which folder of DIR/.../photo names its person: the one at `depth` (1 = top), or the photo's own (leaf)."""

    leaf: bool = False
    depth: int = 1

    @classmethod
    def parse(cls, text: str) -> PersonFrom:
        """top | leaf | depth:N (also depth=N, "depth N" or N)."""
        value = text.strip().lower()
        if value == "top":
            return cls()
        if value == "leaf":
            return cls(leaf=True)
        number = value.removeprefix("depth").strip(" :=")
        if number.isdigit() and int(number) >= 1:
            return cls(depth=int(number))
        raise IdentityError(f"--person-from {text!r}: expected top, leaf or depth:N with N >= 1 (e.g. depth:2)")

    def person_folder(self, folders: Sequence[str]) -> int | None:
        """How many of `folders` (the path from DIR down to a photo) lead to its person folder; None: none does."""
        if self.leaf:
            return len(folders) or None
        return self.depth if len(folders) >= self.depth else None

    def describe(self) -> str:
        return "leaf" if self.leaf else "top" if self.depth == 1 else f"depth:{self.depth}"


@dataclass(frozen=True)
class InputRow:
    """An entry that never becomes a job: `skipped` or `failed`, and why."""

    source_path: str
    external_id: str
    outcome: str
    reason: str
    named_by: str = ""


@dataclass
class EnrollInputs:
    specs: list[JobSpec] = field(default_factory=list)
    unqueued: list[InputRow] = field(default_factory=list)
    named_by: dict[tuple[str, str], str] = field(default_factory=dict)  # (source_path, external_id) -> what named it
    warnings: list[str] = field(default_factory=list)  # about the input as a whole (a manifest not in UTF-8)

    def __iter__(self) -> Iterator[JobSpec]:
        """The specs to queue, for callers that only queue (tests, benchmarks)."""
        return iter(self.specs)

    def add(self, spec: JobSpec, named_by: str) -> None:
        self.specs.append(spec)
        self.named_by.setdefault((spec.source_path, spec.external_id), named_by)


@dataclass(frozen=True)
class _Entry:
    """One thing a folder scan met: `image`, or a skipped/failed entry with its reason."""

    path: Path
    parts: tuple[str, ...]  # relative to DIR, the entry's own name last
    state: str
    reason: str = ""
    folder: bool = False  # the entry is a folder (unreadable, or a link looping back)


def from_directory(root: Path, person_from: PersonFrom | None = None) -> EnrollInputs:
    """DIR/<person>/... photos; `person_from` None is `top`,
    refused when person folders hold sub-folders with images."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise IdentityError(f"{root}: not a directory (expected one sub-folder per person)")
    entries: list[_Entry] = []
    root_stat = root.stat()
    _scan(root, (), frozenset({(root_stat.st_dev, root_stat.st_ino)}), entries)
    if entries and not entries[0].parts:
        raise IdentityError(f"{root}: {entries[0].reason}")
    if person_from is None:
        _refuse_nested(root, entries)
        person_from = PersonFrom()
    inputs = EnrollInputs()
    for entry in entries:
        # Names that are not UTF-8 go on as path_text (escaped), which every store takes.
        folders = tuple(map(path_text, entry.parts if entry.folder else entry.parts[:-1]))
        depth = person_from.person_folder(folders)
        person, named_by = (folders[depth - 1], "/".join(folders[:depth])) if depth else ("", "")
        source = path_text(entry.path)
        if entry.state != "image":
            inputs.unqueued.append(InputRow(source, person, entry.state, entry.reason, named_by))
        elif not depth:
            inputs.unqueued.append(
                InputRow(source, "", "skipped", f"not inside a person folder (--person-from {person_from.describe()})")
            )
        else:
            try:
                inputs.add(JobSpec(source, check_external_id(person)), named_by)
            except IdentityError as exc:
                inputs.unqueued.append(InputRow(source, person, "failed", f"folder {named_by}: {exc}", named_by))
    return inputs


def image_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every image under `root` at any depth, in name order (no person folders needed), and the
    (path, reason) of entries that could not be read."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise IdentityError(f"{root}: not a directory")
    root_stat = root.stat()
    entries: list[_Entry] = []
    _scan(root, (), frozenset({(root_stat.st_dev, root_stat.st_ino)}), entries)
    return (
        [e.path for e in entries if e.state == "image"],
        [(str(e.path), e.reason or e.state) for e in entries if e.state == "failed"],
    )


def _scan(folder: Path, parts: tuple[str, ...], above: frozenset[tuple[int, int]], out: list[_Entry]) -> None:
    """Every entry under `folder`, depth first in name order; folder links are followed unless they loop."""
    try:
        with os.scandir(folder) as listing:
            children = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        out.append(_Entry(folder, parts, "failed", f"cannot read folder ({exc.strerror or exc})", folder=True))
        return
    for child in children:
        path, rel = Path(child.path), parts + (child.name,)
        if child.name.startswith("."):
            out.append(_Entry(path, rel, "skipped", "hidden"))
            continue
        try:
            info = os.stat(path)  # follows links: what the entry stands for
        except OSError as exc:
            out.append(_Entry(path, rel, "failed", _unreachable(path, exc)))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in above:
                out.append(_Entry(path, rel, "failed", "folder link loops back to a folder above it", folder=True))
            else:
                _scan(path, rel, above | {key}, out)
        elif not stat.S_ISREG(info.st_mode):
            out.append(_Entry(path, rel, "skipped", f"not a regular file ({_kind(info.st_mode)})"))
        elif looks_like_image(path):
            out.append(_Entry(path, rel, "image"))
        else:
            out.append(_Entry(path, rel, "skipped", "not an image file"))


def _unreachable(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if path.is_symlink():
        return f"broken symbolic link (to {os.readlink(path)})"
    return f"cannot read ({exc.strerror or exc})"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _refuse_nested(root: Path, entries: Sequence[_Entry]) -> None:
    """Today's rule takes each top folder as a person: refuse an archive where that would merge many."""
    nested = next((e for e in entries if e.state == "image" and len(e.parts) > 2), None)
    if nested is not None:
        top, sub = nested.parts[0], "/".join(nested.parts[:-1])
        raise IdentityError(
            f"{root}: person folders hold sub-folders with images (e.g. {'/'.join(nested.parts)}); say which folder "
            f"names the person: {LAYOUTS} (top: {top} is one person; leaf: {nested.parts[-2]}; depth:2: {sub})"
        )


def from_manifest(manifest: Path) -> EnrollInputs:
    """CSV with columns path, external_id, optional display_name; other columns become attributes.

    A row that cannot be enrolled (empty path, an id no database takes, a NUL character, a
    path that loops) becomes a failed row naming the line it starts on; the other rows are queued.
    """
    manifest = manifest.expanduser().resolve()
    inputs = EnrollInputs()
    text = _manifest_text(manifest, inputs.warnings)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in MANIFEST_REQUIRED if c not in header]
        if missing:
            raise IdentityError(f"{path_text(manifest)}: manifest lacks column(s) {', '.join(missing)}")
        extra = [c for c in header if c not in MANIFEST_KNOWN]
        line = reader.line_num + 1  # where the next row starts: a quoted field may span lines
        for values in reader:
            named_by, line = f"{path_text(manifest.name)}:{line}", reader.line_num + 1
            if values:  # a blank line
                _add_manifest_row(inputs, manifest, dict(zip(header, values)), extra, named_by)
    except csv.Error as exc:
        raise IdentityError(f"{path_text(manifest)}:{reader.line_num}: not a readable CSV manifest ({exc})") from None
    return inputs


def _manifest_text(manifest: Path, warnings: list[str]) -> str:
    """The manifest's text: UTF-8 (a BOM allowed), else read as Windows-1252 (Latin-1) with a warning."""
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path_text(manifest)}: cannot read manifest ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        warnings.append(
            f"{path_text(manifest)}: not UTF-8 (line {line}: byte 0x{data[exc.start]:02x}); read as "
            "Windows-1252 (Latin-1): save it as UTF-8 if names look wrong"
        )
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return data.decode("latin-1")


def _add_manifest_row(
    inputs: EnrollInputs, manifest: Path, row: dict[str, str], extra: Sequence[str], named_by: str
) -> None:
    """Queue one manifest row, or record it failed with the reason (every error is the row's own)."""
    path, external_id = (row.get("path") or "").strip(), (row.get("external_id") or "").strip()
    # An absolute path stays as it is; `\xNN` escapes (as reports write names that are not UTF-8) are read back.
    resolved = manifest.parent / Path(fs_path(path)).expanduser()
    try:
        nul = next((column for column, value in row.items() if "\0" in value), None)
        if nul is not None:
            raise IdentityError(f"column {nul} contains a NUL character")
        if not path:
            raise IdentityError("path is empty")
        try:
            resolved = resolved.resolve()
        except RuntimeError:  # what Python raises for a symbolic link loop
            raise IdentityError(f"{path_text(resolved)}: symbolic link loop") from None
        except OSError as exc:
            raise IdentityError(f"{path_text(resolved)}: cannot resolve the path ({exc.strerror or exc})") from None
        spec = JobSpec(
            path_text(resolved),
            check_external_id(external_id),
            check_display_name(row.get("display_name") or None),
            {c: row[c] for c in extra if row.get(c) not in (None, "")} or None,
        )
    except IdentityError as exc:
        inputs.unqueued.append(
            InputRow(
                path_text(resolved) if path else "",
                external_id.replace("\0", "\\0"),
                "failed",
                f"{named_by}: {exc}",
                named_by,
            )
        )
        return
    inputs.add(spec, named_by)


def from_files(external_id: str, paths: Sequence[Path], display_name: str | None = None) -> EnrollInputs:
    """--person ID IMG...: one id for every file; a missing or unreadable file fails on its own report row."""
    external_id, display_name = check_external_id(external_id), check_display_name(display_name)
    inputs = EnrollInputs()
    for path in paths:
        try:
            source = path_text(path.expanduser().resolve())
        except RuntimeError:  # what Python raises for a symbolic link loop
            inputs.unqueued.append(InputRow(path_text(path), external_id, "failed", "symbolic link loop", "--person"))
            continue
        inputs.add(JobSpec(source, external_id, display_name), "--person")
    return inputs


class UnclearInputs(InvalidArgument):
    """What to enroll is not one clear choice (the CLI's usage error, HTTP's 422)."""


def choose_inputs(
    paths: Sequence[Path],
    person: str | None = None,
    display_name: str | None = None,
    manifest: Path | None = None,
    person_from: str | None = None,
) -> EnrollInputs:
    """The one rule for what a request enrolls, CLI and HTTP alike: a manifest; files of one `person`; or one
    folder holding a folder per person (`person_from`: which folder names the person). UnclearInputs otherwise."""
    if sum(bool(x) for x in (manifest, person, paths and not person)) != 1:
        raise UnclearInputs("give one of: a folder (one sub-folder per person), a manifest, or files with a person")
    if person and not paths:
        raise UnclearInputs("a person needs at least one image")
    if person_from and (manifest or person):
        raise UnclearInputs(
            "person-from applies to a folder (a manifest or files with a person name persons themselves)"
        )
    if manifest:
        return from_manifest(manifest)
    if person:
        return from_files(person, paths, display_name)
    if len(paths) > 1 or not paths[0].is_dir():
        raise UnclearInputs("give one folder (one sub-folder per person), or files with a person")
    return from_directory(paths[0], PersonFrom.parse(person_from) if person_from else None)
