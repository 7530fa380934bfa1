"""Listing a data folder safely: images with their labels, and every other
entry accounted for (skipped with its reason, or listed as no image)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from featx.errors import DataError, printable
from featx.images.formats import image_extensions, is_image_name

if TYPE_CHECKING:
    from featx.images.labels import Labelling

__all__ = [
    "FolderWalker",
    "ImageSet",
    "Skipped",
    "entry_kind",
    "list_images",
    "skip_groups",
]


@dataclass(frozen=True)
class Skipped:
    """An entry of a data folder that is not read, and why (kept in the cache)."""

    path: str
    reason: str


@dataclass
class ImageSet:
    """The images of one folder, sorted by relative path.

    ``labels`` is -1 for every image of a flat (unlabelled) folder. ``skipped``
    lists the entries that were not read (links, special files, unreadable
    folders, names that are not UTF-8), each with its reason.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    ignored: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Files that are not images (by extension), hidden files and folders: not
    #: errors, but listed, so that every entry of the folder is accounted for.
    not_images: list[Skipped] = field(default_factory=list)
    #: Where the labels came from: "folders", "none", or a :class:`Labelling`'s.
    labelling: str = "folders"
    notes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class FolderWalker:
    """Lists image files under a folder, safely.

    Only regular files are listed (a FIFO or device named ``x.png`` is never
    opened). A linked folder is entered at most once (by device and inode) and
    never when it is one of its own ancestors; a dangling link, an unreadable
    folder, a path too long, a name that is not UTF-8: each is skipped and
    recorded with its reason.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: set[tuple[int, int]] = set()
        self.skipped: list[Skipped] = []
        self.not_images: list[Skipped] = []

    def _entry(self, path: Path, reason: str) -> Skipped:
        rel = os.path.relpath(path, self.root)
        return Skipped(printable(rel.replace(os.sep, "/")), reason)

    def skip(self, path: Path, reason: str) -> None:
        """An image (by name) that cannot be read: recorded as a failure."""
        self.skipped.append(self._entry(path, reason))

    def not_image(self, path: Path, reason: str) -> None:
        """An entry that is no image: listed, never an error."""
        self.not_images.append(self._entry(path, reason))

    def files(self, folder: Path, ancestors: tuple = ()) -> list[Path]:
        """The image files under ``folder``, recursively."""
        try:
            st = folder.stat()
        except OSError as exc:
            self.skip(folder, f"cannot read folder: {_reason(exc)}")
            return []
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            self.skip(folder, "link to one of its own parent folders (a loop)")
            return []
        if key in self.seen:
            self.skip(folder, "folder already listed through another link")
            return []
        self.seen.add(key)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            self.skip(folder, f"cannot read folder: {_reason(exc)}")
            return []
        found: list[Path] = []
        for kind, path in self.classify(entries):
            if kind == "dir":
                found.extend(self.files(path, (*ancestors, key)))
            else:
                found.append(path)
        return found

    def classify(self, entries) -> Iterator[tuple[str, Path]]:
        """``("dir", path)`` for each subfolder and ``("file", path)`` for each
        image file among ``entries`` (of one folder), by name; what cannot be
        read, or is named in bytes that are not UTF-8, is skipped with its reason.
        """
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith("."):
                hidden = "folder" if _is_dir(entry) else "file"
                self.not_image(path, f"hidden {hidden}")
                continue
            kind = entry_kind(entry)
            if kind not in ("dir", "file"):
                if is_image_name(entry.name):
                    self.skip(path, kind)
                else:
                    self.not_image(path, f"not an image ({kind})")
            elif kind == "file" and not is_image_name(entry.name):
                self.not_image(path, "not an image")
                continue
            elif not _utf8(entry.name):
                what = "folder" if kind == "dir" else "file"
                self.skip(path, f"{what} name is not valid UTF-8; rename it")
            else:
                yield kind, path


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def skip_groups(entries: list[Skipped]) -> list[tuple[str, int]]:
    """Entries that are not images, counted by kind, most first: their extension
    (``.txt``), the name of a hidden file without one (``.DS_Store``), ``no
    extension`` or ``hidden folders``."""
    counts: dict[str, int] = {}
    for entry in entries:
        name = PurePosixPath(entry.path).name
        if entry.reason == "hidden folder":
            group = "hidden folders"
        else:
            group = PurePosixPath(name).suffix.lower() or (
                name if name.startswith(".") else "no extension"
            )
        counts[group] = counts.get(group, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def entry_kind(entry: os.DirEntry | Path, missing: str = "vanished") -> str:
    """``dir``, ``file``, or the reason ``entry`` is neither (``missing`` when it
    does not exist and is no dangling link)."""
    try:
        st = entry.stat()  # follows links
    except FileNotFoundError:
        return "dangling symbolic link" if entry.is_symlink() else missing
    except OSError as exc:
        return f"cannot read: {_reason(exc)}"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "not a regular file (FIFO, socket or device)"


def _labelled_by(root: Path, labelling: Labelling) -> ImageSet:
    """Every image under ``root`` (at any depth), labelled by ``labelling``."""
    walker = FolderWalker(root)
    rels = [p.relative_to(root).as_posix() for p in walker.files(root)]
    found, why_not, notes = labelling.label(root, rels)
    unlabelled = [Skipped(printable(rel), why) for rel, why in why_not]
    if not found:
        raise DataError(
            f"no image in {printable(str(root))} got a label from "
            + (f"{labelling.csv}" if labelling.csv else "--label-from-name")
            + (
                f" (e.g. {unlabelled[0].path}: {unlabelled[0].reason})"
                if unlabelled
                else ""
            )
        )
    classes = sorted(set(found.values()))
    paths = sorted(found)
    return ImageSet(
        root=root,
        paths=paths,
        labels=np.array([classes.index(found[p]) for p in paths], np.int64),
        classes=classes,
        skipped=walker.skipped + unlabelled,
        not_images=walker.not_images,
        labelling=labelling.describe(),
        notes=notes,
    )


def _image_folder(root: Path, per_class: dict, top_files, walker) -> ImageSet:
    """An ImageFolder's images: each class's, sorted; the images lying in
    ``root`` itself are ``ignored``."""
    classes = sorted(per_class)
    rows = sorted(
        (p.relative_to(root).as_posix(), classes.index(name))
        for name, files in per_class.items()
        for p in files
    )
    return ImageSet(
        root=root,
        paths=[r[0] for r in rows],
        labels=np.array([r[1] for r in rows], dtype=np.int64),
        classes=classes,
        ignored=[p.relative_to(root).as_posix() for p in top_files],
        skipped=walker.skipped,
        not_images=walker.not_images,
    )


def list_images(root: Path, labelling: Labelling | None = None) -> ImageSet:
    """List the images under ``root``.

    A folder whose subfolders hold images is read as an ImageFolder: each
    top-level subfolder is a class (searched recursively), and images lying
    directly in ``root`` are ignored (listed in ``ignored``). A folder with images
    only at its top level is read as unlabelled. Entries that cannot be read are
    listed in ``skipped``. With a :class:`Labelling`, every image at any depth
    is listed and labelled by it instead.

    Raises
    ------
    DataError
        If ``root`` does not exist, is not a folder, or holds no image.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {printable(str(root))} does not exist")
    if not root.is_dir():
        raise DataError(
            f"{printable(str(root))} is not a folder: give a folder of images"
        )
    if labelling is not None:
        return _labelled_by(root, labelling)
    walker = FolderWalker(root)
    try:
        st = root.stat()
        walker.seen.add((st.st_dev, st.st_ino))
        entries = list(os.scandir(root))
    except OSError as exc:
        raise DataError(
            f"cannot read data folder {printable(str(root))}: {_reason(exc)}"
        ) from exc
    top_files, per_class = [], {}
    top = (st.st_dev, st.st_ino)
    for kind, path in walker.classify(entries):
        if kind == "dir":
            per_class[path.name] = walker.files(path, (top,))
        else:
            top_files.append(path)
    per_class = {name: files for name, files in per_class.items() if files}
    if per_class:
        return _image_folder(root, per_class, top_files, walker)
    if not top_files:
        why = "".join(f"; skipped {s.path}: {s.reason}" for s in walker.skipped[:3])
        raise DataError(
            f"no images in {printable(str(root))} (looked for the "
            f"{len(image_extensions())} extensions Pillow reads, such as .jpg, .png, "
            f".heic, in the folder or in one subfolder per class){why}"
        )
    paths = [p.name for p in top_files]
    return ImageSet(
        root=root,
        paths=paths,
        labels=np.full(len(paths), -1, np.int64),
        classes=[],
        skipped=walker.skipped,
        not_images=walker.not_images,
        labelling="none",
    )
