"""Listing image folders, decoding images and the preprocessing of the weights.

Decoding always goes through PIL: EXIF orientation is applied, every mode (palette,
grayscale, 16-bit, CMYK, alpha) becomes 8-bit RGB, and images larger than PIL's
decompression-bomb limit are refused. Preprocessing is split in two so that decode
workers ship small uint8 tensors and the device does the float maths:

- :meth:`Preprocess.to_uint8` — resize and centre crop exactly as
  ``weights.transforms()`` does, on the PIL image, to a ``uint8`` tensor;
- :meth:`Preprocess.normalize` — scale to [0, 1] and apply the weights' mean/std.

Together they equal ``weights.transforms()(image)``; a test checks it. Listing
and decoding need no torch: the preprocessing imports it when first used, so
commands that only read caches start faster.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featx.digest import file_sha256
from featx.errors import DataError, ImageDecodeError, ParameterError, printable
from featx.views import crop_views

if TYPE_CHECKING:
    import torch

#: How JPEGs are decoded: ``fast`` lets libjpeg scale in the DCT domain (1/2,
#: 1/4 or 1/8) as far as the resize target allows; ``exact`` decodes in full.
DECODE_MODES = ("fast", "exact")
#: Formats Pillow registers that give no pixels here: the MPEG plugin only reads
#: a header, and the others are stubs that wait for a handler featx never sets.
NO_PIXELS = frozenset({"MPEG"})


def register_heif() -> bool:
    """Teach Pillow HEIC/HEIF (what iPhones write) through pillow-heif; False
    where pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:  # a dependency, but featx still runs without it
        return False
    pillow_heif.register_heif_opener()
    return True


@functools.cache
def image_extensions() -> frozenset[str]:
    """Every file extension (lower case, with its dot) of a format that Pillow,
    with pillow-heif, can decode here.

    Listing goes by extension, not by sniffing each file's first bytes: a folder
    of 100,000 images on a network drive is listed without opening a file, and
    what the extension promises is checked anyway when the file is decoded (a
    ``.jpg`` that is no image becomes a recorded failure, never a silent skip).
    """
    from PIL import EpsImagePlugin, ImageFile

    register_heif()
    Image.init()
    found = set()
    for ext, fmt in Image.registered_extensions().items():
        if fmt not in Image.OPEN or fmt in NO_PIXELS:
            continue
        factory = Image.OPEN[fmt][0]
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        if fmt == "EPS" and not EpsImagePlugin.has_ghostscript():
            continue
        found.add(ext.lower())
    return frozenset(found)


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


@dataclass(frozen=True)
class Labelling:
    """Labels that do not come from class subfolders: a CSV of ``path,label``
    (paths relative to the data folder), or the first group of a regular
    expression searched in each file name (``'^(cat|dog)\\.'``)."""

    csv: Path | None = None
    name_regex: str | None = None

    def __post_init__(self) -> None:
        if (self.csv is None) == (self.name_regex is None):
            raise ParameterError("give one of --labels and --label-from-name")
        if self.name_regex is not None:
            try:
                pattern = re.compile(self.name_regex)
            except re.error as exc:
                raise ParameterError(
                    f"--label-from-name {self.name_regex!r} is not a regular "
                    f"expression: {exc}"
                ) from exc
            if pattern.groups < 1:
                raise ParameterError(
                    f"--label-from-name {self.name_regex!r} has no group: put the "
                    "class in parentheses, e.g. '^(cat|dog)\\.'"
                )

    def describe(self) -> str:
        """How the labels were made, as the cache records it."""
        if self.csv is not None:
            return f"csv {Path(self.csv).resolve()} sha256 {file_sha256(self.csv)}"
        return f"name {self.name_regex}"

    def label(self, root: Path, rels: list[str]) -> tuple[dict, list[Skipped], list]:
        """The label of each of ``rels`` that has one; the others, skipped with
        their reason; and notes (paths of the CSV that are no image here)."""
        if self.name_regex is not None:
            pattern = re.compile(self.name_regex)
            found, skipped = {}, []
            for rel in rels:
                match = pattern.search(PurePosixPath(rel).name)
                if match and match.group(1):
                    found[rel] = match.group(1)
                else:
                    why = f"name does not match --label-from-name {self.name_regex!r}"
                    skipped.append(Skipped(printable(rel), why))
            return found, skipped, []
        table = read_label_csv(Path(self.csv))
        here = set(rels)
        found = {rel: table[rel] for rel in rels if rel in table}
        skipped = [
            Skipped(printable(rel), f"no label in {Path(self.csv).name}")
            for rel in rels
            if rel not in table
        ]
        unknown = [p for p in table if p not in here]
        notes = []
        if unknown:
            notes.append(
                f"{len(unknown)} path(s) of {Path(self.csv).name} are no image in "
                f"{printable(str(root))} (e.g. {printable(unknown[0])})"
            )
        return found, skipped, notes


def read_label_csv(path: Path) -> dict[str, str]:
    """``path -> label`` from a CSV with the columns ``path`` and ``label``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise DataError(
                    f"{path} needs the columns path,label (it has: "
                    f"{','.join(reader.fieldnames or [])})"
                )
            table: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                rel = (row["path"] or "").strip().replace("\\", "/")
                rel = rel.removeprefix("./")
                label = (row["label"] or "").strip()
                if not rel or not label:
                    raise DataError(f"{path}, line {line}: empty path or label")
                if table.setdefault(rel, label) != label:
                    raise DataError(
                        f"{path}, line {line}: {rel} has two labels "
                        f"({table[rel]!r} and {label!r})"
                    )
    except FileNotFoundError as exc:
        raise DataError(f"labels file {path} does not exist") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} as a UTF-8 CSV: {exc}") from exc
    return table


def is_image_name(name: str) -> bool:
    """A name with an extension of :func:`image_extensions` (hidden files, such as
    macOS's ``._photo.jpg``, are never images)."""
    if name.startswith("."):
        return False
    return PurePosixPath(name).suffix.lower() in image_extensions()


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
    found, unlabelled, notes = labelling.label(root, rels)
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
        classes = sorted(per_class)
        rows = sorted(
            (p.relative_to(root).as_posix(), classes.index(name))
            for name, files in per_class.items()
            for p in files
        )
        ignored = [p.relative_to(root).as_posix() for p in top_files]
        return ImageSet(
            root=root,
            paths=[r[0] for r in rows],
            labels=np.array([r[1] for r in rows], dtype=np.int64),
            classes=classes,
            ignored=ignored,
            skipped=walker.skipped,
            not_images=walker.not_images,
        )
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


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's own conversion clips 16-bit values at 255; scale them instead.
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        if img.mode == "I":
            arr = np.clip(arr, 0, 65535)
        img = Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def draft_size(size: tuple[int, int], resize) -> tuple[int, int]:
    """The smallest (width, height) a decode of an image of ``size`` may give
    and still be resized to ``resize`` (torchvision's spelling: ``[short side]``
    or ``[height, width]``) without upsampling."""
    w, h = size
    if len(resize) == 1:
        short = max(min(w, h), 1)
        return (-(-w * resize[0] // short), -(-h * resize[0] // short))
    return (int(resize[1]), int(resize[0]))


def _bomb_guard(img: Image.Image, bomb: warnings.WarningMessage | None) -> None:
    """Refuse an image over PIL's pixel limit, unless the JPEG decoder's DCT
    scaling already brought what it decodes under it: the guard protects memory
    and time, and a 100-megapixel photo decoded at 1/8 costs 1.6 megapixels.
    Above twice the limit PIL refuses at open, scaled or not."""
    if bomb is not None and img.size[0] * img.size[1] > (Image.MAX_IMAGE_PIXELS or 0):
        raise ImageDecodeError(
            f"too large to decode safely (decompression bomb guard): {bomb.message}"
        )


def decode_image(data: bytes | Path, *, scale_to=None) -> Image.Image:
    """Decode one image file (or its bytes) into an 8-bit RGB PIL image.

    ``scale_to`` (a resize target, ``[short side]`` or ``[height, width]``) lets
    a JPEG decode directly at 1/2, 1/4 or 1/8 of its size, the smallest that
    still covers the target (libjpeg's DCT scaling, through PIL's ``draft``).
    Images under twice the target decode in full either way.

    Raises
    ------
    ImageDecodeError
        With a short reason: empty file, not an image, truncated, too large.
    """
    if isinstance(data, Path):
        try:
            data = data.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as opened:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        bomb = None
        for w in opened:
            if issubclass(w.category, Image.DecompressionBombWarning):
                bomb = w
            else:  # passed on to whoever records this image's warnings
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if scale_to is not None and img.format == "JPEG":
            img.draft(img.mode, draft_size(img.size, scale_to))
        _bomb_guard(img, bomb)
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            f"too large to decode safely (decompression bomb guard): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image PIL can identify") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode: {exc}") from exc


@functools.cache
def _stderr_sink():
    """One scratch file per process that file descriptor 2 points at while an
    image decodes."""
    return tempfile.TemporaryFile()


@contextlib.contextmanager
def quiet_decoding() -> Iterator[list[str]]:
    """Capture what decoding one image says: the Python warnings raised (PIL's
    ``UserWarning``s) and the text C libraries write to this process's stderr
    (libtiff's ``TIFFFillStrip: Read error``), which Python's ``warnings`` never
    sees. The list yielded is filled when the block ends, one line a message.
    """
    messages: list[str] = []
    sink = _stderr_sink()
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
        sink.seek(0)
        sink.truncate()
        for w in caught:
            messages.append(f"{w.category.__name__}: {w.message}")
        messages.extend(line.strip() for line in text.splitlines() if line.strip())


class Preprocess:
    """The preprocessing of a torchvision weights entry, split for batching.

    Parameters
    ----------
    transforms
        ``weights.transforms()``: a torchvision ``ImageClassification`` preset.
    """

    #: A mean image file the input is centred with (caffe-alexnet's, if given).
    mean_file: Path | None = None
    #: How JPEGs are decoded, one of :data:`DECODE_MODES`: part of the identity.
    decode: str = "exact"

    @property
    def scale_to(self) -> list[int] | None:
        """The resize target a ``fast`` decode may scale a JPEG down to."""
        return self.resize_size if self.decode == "fast" else None

    def __init__(self, transforms) -> None:
        self.transforms = transforms
        self.resize_size = list(transforms.resize_size)
        self.crop_size = list(transforms.crop_size)
        self.mean = tuple(float(m) for m in transforms.mean)
        self.std = tuple(float(s) for s in transforms.std)
        self.interpolation = transforms.interpolation
        self.antialias = transforms.antialias

    @property
    def crop_hw(self) -> tuple[int, int]:
        """The crop's (height, width); torchvision spells a square one [side]."""
        crop = self.crop_size
        return (crop[0], crop[0]) if len(crop) == 1 else (crop[0], crop[1])

    def _resize(self, img: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as F

        return F.resize(
            img,
            self.resize_size,
            interpolation=self.interpolation,
            antialias=self.antialias,
        )

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """Resize and centre crop a PIL image; return a (3, H, W) uint8 tensor."""
        from torchvision.transforms import functional as F

        return F.pil_to_tensor(F.center_crop(self._resize(img), self.crop_size))

    def views_uint8(self, img: Image.Image, views: tuple[str, ...]) -> torch.Tensor:
        """Resize a PIL image once and cut ``views`` of it (:mod:`featx.views`);
        return a (V, 3, H, W) uint8 tensor."""
        from torchvision.transforms import functional as F

        return crop_views(F.pil_to_tensor(self._resize(img)), self.crop_hw, views)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Turn a (N, 3, H, W) uint8 batch into the normalised float input."""
        import torch

        x = batch.float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def __repr__(self) -> str:
        return repr(self.transforms)

    def describe(self) -> dict:
        """A JSON-able description; part of a cache's identity. A full decode
        (``exact``) is described as before the mode existed, so caches made then
        stay ``exact`` caches."""
        scaled = {"decode": "fast"} if self.decode == "fast" else {}
        return {
            **scaled,
            "decoder": "PIL; EXIF orientation; RGB (alpha over white, 16-bit scaled)",
            "resize": self.resize_size,
            "interpolation": str(self.interpolation.value),
            "antialias": bool(self.antialias),
            "center_crop": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }
