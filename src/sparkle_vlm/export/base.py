"""Export machinery: read a dataset folder, check it, and write one target format.

A dataset folder (``sparkle generate``) holds ``data.jsonl``, ``images/`` and ``manifest.json``.
:func:`export_dataset` turns it into the files a trainer or harness reads. Guarantees:

- Every record's image placeholders match its images (structured parts before export, the
  literal ``<image>`` markers after flattening); no text may contain ``<image>`` itself.
  Violations raise :class:`SparkleError` naming the record.
- Deterministic: the same input and options give byte-identical files. The training order,
  when shuffled, is a pure function of ``--seed`` (upstream shuffles its training set).
- Crash-safe: every file is written atomically; ``sparkle-export.json`` (format, source
  manifest hash, counts, file hashes) is written last and marks the export complete. A
  folder left by an interrupted or earlier export can be exported into again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.fsutil import atomic_write_bytes, atomic_write_json, check_writable_dir
from sparkle_vlm.registry import Registry

IMAGE_TOKEN = "<image>"
#: Other media placeholders that multimodal trainers also parse out of text.
RESERVED_TOKENS = (IMAGE_TOKEN, "<video>", "<audio>")
EXPORT_MANIFEST = "sparkle-export.json"
PARTIAL = ".sparkle-export-partial.json"
FORMAT_VERSION = 1
SOURCE_MANIFEST = "manifest.json"
SOURCE_DATA = "data.jsonl"
REQUIRED_KEYS = ("id", "task", "split", "images", "messages", "answer", "answer_type")


@dataclass(frozen=True)
class ExportOptions:
    """User options of an export.

    ``absolute_paths`` None means the format's own default (see each exporter);
    ``shuffle`` None means "shuffle training splits, keep test order".
    """

    absolute_paths: bool | None = None
    copy_images: bool = False
    shuffle: bool | None = None
    seed: int = 0
    name: str | None = None


@dataclass(frozen=True)
class Source:
    """A complete dataset folder, read and checked."""

    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Exporter:
    """One target format.

    ``write`` writes the format's files through the context and returns nothing; the
    context records what was written. ``check`` (optional) refuses unsuitable input before
    anything in the export folder is touched. ``absolute_paths`` is the default path style
    for formats that reference image files; ``embeds_images`` formats carry the bytes instead.
    """

    name: str
    description: str
    write: Callable[[ExportContext], None]
    absolute_paths: bool = False
    embeds_images: bool = False
    check: Callable[[ExportContext], None] | None = None


EXPORTERS: Registry[Exporter] = Registry("export format")


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    records: int
    images: int
    files: list[str]


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # os.umask can only be read by setting it; do that once, not around every file.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Give a written file the usual permissions: temp files are created owner-only (0600),
    and exports are often read by other accounts (training jobs, shared clusters)."""
    os.chmod(path, 0o666 & ~_umask())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_data_extra(fmt: str) -> None:
    """Fail with an install hint when ``datasets``/``pyarrow`` (the ``data`` extra) are missing."""
    try:
        import datasets  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise SparkleError(
            f"--format {fmt}: needs the 'data' extra ({exc.name} is missing): pip install 'sparkle-vlm[data]'"
        ) from None


def load_source(path: str | os.PathLike[str]) -> Source:
    """Read a finished dataset folder; fail with a one-line error if it is not one."""
    p = Path(path).expanduser().absolute()
    if not p.is_dir():
        raise SparkleError(f"DIR: {p} is not a folder")
    manifest_p = p / SOURCE_MANIFEST
    data_p = p / SOURCE_DATA
    if not manifest_p.exists():
        raise SparkleError(
            f"DIR: {p} has no {SOURCE_MANIFEST} (not a sparkle dataset, or its generation did not finish)"
        )
    if not data_p.exists():
        raise SparkleError(f"DIR: {p} has no {SOURCE_DATA}")
    raw_manifest = manifest_p.read_bytes()
    try:
        manifest = json.loads(raw_manifest)
    except ValueError as exc:
        raise SparkleError(f"DIR: {manifest_p} is not valid JSON ({exc})") from None
    raw = data_p.read_bytes()
    want = manifest.get("data_sha256")
    if want and _sha256(raw) != want:
        raise SparkleError(
            f"DIR: {data_p} changed after generation (sha256 differs from {SOURCE_MANIFEST}); regenerate it"
        )
    records: list[dict[str, Any]] = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise SparkleError(f"DIR: {data_p}:{n} is not valid JSON ({exc})") from None
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if missing:
            raise SparkleError(f"DIR: {data_p}:{n} lacks {', '.join(missing)}")
        records.append(rec)
    ids = Counter(r["id"] for r in records)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise SparkleError(f"DIR: duplicate record id {dup[0]!r} in {data_p}")
    checked: set[str] = set()
    for rec in records:
        for rel in rec["images"]:
            if rel in checked:
                continue
            if os.path.isabs(rel) or ".." in Path(rel).parts:
                raise SparkleError(f"record {rec['id']}: image path {rel!r} leaves the dataset folder")
            if not os.path.isfile(os.path.join(p, rel)):
                raise SparkleError(f"record {rec['id']}: image {p / rel} is missing")
            checked.add(rel)
    return Source(p, manifest, _sha256(raw_manifest), records)


def record_texts(record: dict[str, Any]) -> Iterable[str]:
    """Every piece of text of a record that an exporter may write into a prompt or label."""
    for turn in record["messages"]:
        content = turn["content"]
        if isinstance(content, str):
            yield content
            continue
        for part in content:
            if part.get("type") == "text":
                yield part.get("text") or ""
    yield str(record.get("answer") or "")
    for choice in record.get("choices") or []:
        yield str(choice)


def check_record(record: dict[str, Any]) -> None:
    """Placeholders must match images; text must not contain media tokens.

    >>> rec = {"id": "r", "images": ["a.png"], "answer": "x", "messages": [
    ...     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is <image>?"}]}]}
    >>> check_record(rec)
    Traceback (most recent call last):
    ...
    sparkle_vlm.errors.SparkleError: record r: its text contains the literal '<image>', which trainers read as an image slot
    """
    rid = record.get("id")
    n_parts = sum(
        1
        for turn in record["messages"]
        if not isinstance(turn["content"], str)
        for part in turn["content"]
        if part.get("type") == "image"
    )
    if n_parts != len(record["images"]):
        raise SparkleError(f"record {rid}: {n_parts} image placeholders but {len(record['images'])} images")
    for text in record_texts(record):
        for token in RESERVED_TOKENS:
            if token in text:
                raise SparkleError(
                    f"record {rid}: its text contains the literal {token!r}, which trainers read as an image slot"
                    if token == IMAGE_TOKEN
                    else f"record {rid}: its text contains the literal {token!r}, which trainers read as a media slot"
                )


def flatten(content: Any, image_sep: str = "") -> str:
    """A turn's content as one string, each image part replaced by ``<image>``.

    ``image_sep`` goes between the last marker of a run and the text that follows
    (LLaVA puts a newline there; ms-swift and LLaMA-Factory nothing).

    >>> flatten([{"type": "image"}, {"type": "text", "text": "Where is N1?"}], "\\n")
    '<image>\\nWhere is N1?'
    """
    if isinstance(content, str):
        return content
    out: list[str] = []
    prev_image = False
    for part in content:
        if part.get("type") == "image":
            out.append(IMAGE_TOKEN)
            prev_image = True
        else:
            text = part.get("text") or ""
            out.append((image_sep if prev_image else "") + text)
            prev_image = False
    return "".join(out)


def check_markers(record_id: str, texts: Iterable[str], n_images: int) -> None:
    """The flattened text must hold exactly one ``<image>`` per image."""
    n = sum(t.count(IMAGE_TOKEN) for t in texts)
    if n != n_images:
        raise SparkleError(f"record {record_id}: {n} {IMAGE_TOKEN} markers but {n_images} images")


def shuffle_order(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` that depends on ``seed`` and ``n`` only.

    >>> shuffle_order(5, 0) == shuffle_order(5, 0)
    True
    >>> sorted(shuffle_order(5, 1))
    [0, 1, 2, 3, 4]
    """
    from sparkle_vlm.seeding import sample_rng

    return [int(i) for i in sample_rng("export/shuffle", "all", seed, 0).permutation(n)]


_NAME_RE = re.compile(r"[^A-Za-z0-9_]+")


def default_name(manifest: dict[str, Any]) -> str:
    """``sparkle_<suite or task>`` with characters other than letters, digits and ``_`` folded to ``_``."""
    base = str(manifest.get("suite") or manifest.get("task") or "dataset")
    return "sparkle_" + _NAME_RE.sub("_", base).strip("_").lower()


@dataclass
class ExportContext:
    """What an exporter sees: the ordered records and helpers that write and reference files."""

    source: Source
    out: Path
    options: ExportOptions
    exporter: Exporter
    records: list[dict[str, Any]]
    name: str
    absolute_paths: bool
    files: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    _png_cache: dict[str, bytes] = field(default_factory=dict)
    _ref_cache: dict[str, str] = field(default_factory=dict)

    @property
    def split(self) -> str:
        """The split of the records (``train``/``test``), or ``mixed``."""
        splits = {r["split"] for r in self.records}
        return splits.pop() if len(splits) == 1 else "mixed"

    def image_ref(self, rel: str) -> str:
        """How a written file names a source image (see the module docstring of each format).

        With ``--copy-images`` the image lives in the export folder (``images/...``);
        otherwise the path points back into the dataset folder. Relative paths are relative
        to the export folder and use ``/``.
        """
        ref = self._ref_cache.get(rel)
        if ref is None:
            target = self.out / rel if self.options.copy_images else self.source.path / rel
            if self.absolute_paths:
                ref = os.path.normpath(str(target))
            else:
                ref = Path(os.path.relpath(target, self.out)).as_posix()
            self._ref_cache[rel] = ref
        return ref

    def image_bytes(self, rel: str) -> bytes:
        """The bytes of a source image (cached: many records share one image)."""
        data = self._png_cache.get(rel)
        if data is None:
            data = (self.source.path / rel).read_bytes()
            if len(self._png_cache) < 4096:
                self._png_cache[rel] = data
        return data

    def path(self, rel: str) -> Path:
        p = self.out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, rel: str, data: bytes) -> None:
        atomic_write_bytes(self.path(rel), data)
        make_readable(self.out / rel)
        self._note(rel)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str, obj: Any, indent: int | None = 2) -> None:
        """JSON with stable bytes: keys in insertion order, UTF-8, trailing newline."""
        self.write_text(rel, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")

    def write_json_array(self, rel: str, rows: Iterable[dict[str, Any]]) -> None:
        """A JSON array with one compact row per line: valid JSON, quick to write, readable in a diff."""
        body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
        self.write_text(rel, f"[\n{body}\n]\n" if body else "[]\n")

    def write_jsonl(self, rel: str, rows: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        self.write_text(rel, "".join(line + "\n" for line in lines))

    def note_file(self, rel: str) -> None:
        """Record a file written by other means (it must already be in place)."""
        self._note(rel)

    def _note(self, rel: str) -> None:
        if rel not in self.files:
            self.files.append(rel)


def _prepare_out(out: Path, source: Path) -> None:
    """Refuse folders that hold anything but an earlier export; remove that export's files."""
    if out == source:
        raise SparkleError("--out: must differ from the dataset folder")
    if source.is_relative_to(out):
        raise SparkleError(f"--out: {out} contains the dataset folder; choose another folder")
    if not out.exists() or not any(out.iterdir()):
        return
    previous = out / EXPORT_MANIFEST
    partial = out / PARTIAL
    if not previous.exists() and not partial.exists():
        raise SparkleError(f"--out: {out} is not empty and holds no sparkle export; choose another folder")
    listed: list[str] = []
    for marker in (previous, partial):
        if marker.exists():
            try:
                info = json.loads(marker.read_text())
            except ValueError:
                continue
            listed += list(info.get("files", {})) + list(info.get("copied_images", []))
    for rel in listed:
        p = (out / rel).resolve()
        if p.is_relative_to(out.resolve()) and p.is_file():
            p.unlink()
    previous.unlink(missing_ok=True)


def export_dataset(
    source: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export the dataset folder ``source`` to format ``fmt`` in folder ``out``."""
    import sparkle_vlm.export  # noqa: F401  (registers the built-in formats)

    options = options or ExportOptions()
    exporter = EXPORTERS.get(fmt)
    if not isinstance(options.seed, int) or options.seed < 0:
        raise SparkleError(f"--seed: must be a non-negative integer, got {options.seed!r}")
    if options.name is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", options.name):
        raise SparkleError(
            f"--name: use letters, digits and '_' only, starting with a letter; got {options.name!r}"
        )
    out_p = check_writable_dir(out)
    src = load_source(source)
    if not src.records:
        raise SparkleError(f"DIR: {src.path} holds no records to export")

    # Everything that can refuse the input runs before the export folder is touched.
    records = list(src.records)
    for rec in records:
        check_record(rec)
    shuffle = options.shuffle
    if shuffle is None:
        shuffle = all(r["split"] == "train" for r in records)
    if shuffle:
        records = [records[i] for i in shuffle_order(len(records), options.seed)]

    absolute = exporter.absolute_paths if options.absolute_paths is None else options.absolute_paths
    ctx = ExportContext(
        source=src,
        out=out_p,
        options=options,
        exporter=exporter,
        records=records,
        name=options.name or default_name(src.manifest),
        absolute_paths=absolute,
    )
    if exporter.check is not None:
        exporter.check(ctx)
    _prepare_out(out_p, src.path)
    out_p.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_p / PARTIAL, {"format": exporter.name, "files": {}, "copied_images": []})

    images = sorted({rel for rec in records for rel in rec["images"]})
    if options.copy_images and not exporter.embeds_images:
        for rel in images:
            dest = ctx.path(rel)
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(src.path / rel, tmp)
            make_readable(tmp)
            os.replace(tmp, dest)
            ctx.copied.append(rel)
        # Keep the copy list where a crashed run's cleanup can find it.
        atomic_write_json(
            out_p / PARTIAL, {"format": exporter.name, "files": {}, "copied_images": ctx.copied}
        )

    exporter.write(ctx)

    manifest = {
        "format": exporter.name,
        "format_version": FORMAT_VERSION,
        "description": exporter.description,
        "name": ctx.name,
        "source": {
            "manifest_sha256": src.manifest_sha256,
            "data_sha256": src.manifest.get("data_sha256"),
            "suite": src.manifest.get("suite"),
            "task": src.manifest.get("task"),
            "task_version": src.manifest.get("task_version"),
            "split": src.manifest.get("split"),
            "seed": src.manifest.get("seed"),
        },
        "options": {
            "absolute_paths": None if exporter.embeds_images else absolute,
            "copy_images": options.copy_images and not exporter.embeds_images,
            "shuffle": shuffle,
            "seed": options.seed,
        },
        "counts": {
            "records": len(records),
            "images": len(images),
            "by_task": dict(sorted(Counter(r["task"] for r in records).items())),
            "by_split": dict(sorted(Counter(r["split"] for r in records).items())),
        },
        "files": {rel: _file_sha256(out_p / rel) for rel in ctx.files},
        "copied_images": ctx.copied,
        "software": {"sparkle_vlm": __version__},
    }
    atomic_write_json(out_p / EXPORT_MANIFEST, manifest)
    make_readable(out_p / EXPORT_MANIFEST)
    (out_p / PARTIAL).unlink(missing_ok=True)
    return ExportResult(out_p, exporter.name, len(records), len(images), list(ctx.files))
