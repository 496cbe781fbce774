"""Source discovery and validation: the first stage of a conversion. Reads, never writes.

Entry points: ``find_sources`` (which mice a list of paths names) and ``scan_source``
(one mouse folder or zip -> a checked ``SourceLayout``). Scanning reads every `.npy`
header but no trial data, so every structural problem is reported before a store exists.

A source may also be a URL (``s3://bucket/path/mouse.zip``, ``s3://bucket/path/mouse/``,
or a prefix holding several mice): the same tree, its files read by ranged requests
(``_bucket``), its headers fetched concurrently since each costs a round trip.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from sensorium_zarr import format as fmt
from sensorium_zarr._location import Remote, is_url
from sensorium_zarr.errors import SourceError

from ._bucket import RangedFile, RemoteObject, find_remote, in_order, is_zip_url, list_folder, zip_object
from ._npy import NpyHeader, check_size, read_array, read_header
from ._zip import HEAD_BYTES, ZipReader, check_member, reason

__all__ = ["SourceTree", "SourceLayout", "find_sources", "open_tree", "scan_source"]

#: Trial files: ``<id>.npy``, the id in canonical ASCII decimal (the writer rebuilds the
#: name from the id, so ``004.npy`` or ``٤.npy`` would be lost, and ``04.npy`` beside
#: ``4.npy`` would hide one of them), below 10**18 so it fits int64.
_TRIAL_FILE = re.compile(r"^(0|[1-9][0-9]{0,17})\.npy$")
_TRIAL_RULE = "<id>.npy, <id> in ASCII digits without leading zeros, at most 18 of them"
#: Mouse names become store names (``<name>.zarr``, ``.<name>.zarr.partial``): one safe,
#: visible path component that fits a file name.
_MAX_NAME = 200
_NAME_RULE = (
    f"a mouse name must be one folder name of 1 to {_MAX_NAME} characters, not starting "
    "with '.', without '/', '\\', ':' or control characters"
)
#: config.json is copied into the root attributes: small and shallow, or refused.
MAX_CONFIG_BYTES = 2**20
MAX_CONFIG_DEPTH = 64
_MACOSX = "__MACOSX"
#: Expected number of dimensions of each per-trial source file (time last).
_SOURCE_NDIM = {fmt.VIDEOS: 3, fmt.RESPONSES: 2, fmt.BEHAVIOR: 2, fmt.PUPIL_CENTER: 2}
#: A mouse source: a local folder or zip, or one in object storage.
Source = Path | Remote


class SourceTree:
    """Files of one mouse, in a folder or a zip, on disk or in object storage, addressed
    by POSIX paths relative to the mouse folder (``data/videos/0.npy``). Picklable, so
    Dask workers can open files."""

    def __init__(
        self, path: Source, name: str, files: dict[str, int], prefix: str = "", archive: ZipReader | None = None
    ) -> None:
        self.path = path
        self.name = name
        self.files = files  # relative path -> size in bytes
        self._prefix = prefix  # folder of the mouse inside a zip
        self.is_zip = archive is not None
        self._zip = archive

    @property
    def is_remote(self) -> bool:
        return isinstance(self.path, Remote)

    def where(self, rel: str) -> str:
        """How error messages name a file: a real path or URL, or ``archive.zip:member``."""
        if self.is_zip:
            return f"{self.path}:{self._prefix}{rel}"
        if isinstance(self.path, Remote):
            return f"{self.path.url}/{rel}"
        return str(self.path / rel)

    def open(self, rel: str, header_only: bool = False) -> BinaryIO:
        """The file ``rel``, for reading; raises ``SourceError`` naming it if that fails.
        ``header_only``: only its first bytes will be read (a remote source fetches just those)."""
        if self._zip is not None:
            return self._zip.open(self._prefix + rel, self.where(rel), header_only)  # type: ignore[return-value]
        if isinstance(self.path, Remote):
            size = self.files[rel]
            file = RangedFile(RemoteObject(self.path, rel, size), self.where(rel))
            file.expect(0, min(size, HEAD_BYTES) if header_only else size)
            return file  # type: ignore[return-value]
        return _open_regular(self.path / rel)

    def headers(self, rels: Sequence[str]) -> Iterator[NpyHeader]:
        """Each file's header, checked against its size, in order; a remote source fetches
        them concurrently, a local one reads each when the caller gets to it."""
        yield from (in_order if self.is_remote else map)(self._header, rels)

    def _header(self, rel: str) -> NpyHeader:
        with self.open(rel, header_only=True) as fp:
            header = read_header(fp, self.where(rel))
            check_size(header, fp.tell(), self.files[rel], self.where(rel))
            return header

    @property
    def nbytes(self) -> int:
        return sum(self.files.values())


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file; a FIFO, device or socket is refused before it can block a read."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        # It was there when the source was scanned.
        raise SourceError(
            f"{path}: could not be read ({reason(e)}); did the source change while it was converted?"
        ) from e
    except OSError as e:
        raise SourceError(f"{path}: could not be read ({reason(e)})") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(f"{path}: {_kind(mode)}, not a regular file; refusing to read it")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _check_name(name: str, where: object) -> str:
    if (
        not name or len(name) > _MAX_NAME or name.startswith(".")
        or any(c in "/\\:" or ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise SourceError(f"{where}: mouse name {name!r} is not usable: {_NAME_RULE}")
    return name


@dataclass(frozen=True)
class SourceLayout:
    """Everything a conversion needs to know about one mouse, checked, before any data is read."""

    tree: SourceTree
    # int64 ids of the trials that have files, in the store's order (tier-major,
    # ``format.stored_trial_order``): position i of every stored per-trial array is trial_ids[i]
    trial_ids: np.ndarray
    trial_tiers: np.ndarray  # tier name of each of those trials
    headers: dict[tuple[str, int], NpyHeader]  # (variable, trial id) -> header
    shapes: dict[str, tuple[int, ...]]  # variable -> source shape of one trial (time last)
    dtypes: dict[str, np.dtype]  # variable -> dtype every file of it casts to losslessly
    source_dtypes: dict[str, str]  # variable -> the distinct dtypes found, comma separated
    meta_files: dict[str, NpyHeader]  # "meta/..../x.npy" -> header
    config: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.tree.name

    @property
    def t_pad(self) -> int:
        return self.shapes[fmt.RESPONSES][-1]

    @property
    def n_neurons(self) -> int:
        return self.shapes[fmt.RESPONSES][0]

    @property
    def n_trials(self) -> int:
        return len(self.trial_ids)

    def trial_file(self, variable: str, trial_id: int) -> str:
        return f"data/{variable}/{int(trial_id)}.npy"

    def read_trial(self, variable: str, trial_id: int, out: np.ndarray | None = None) -> np.ndarray:
        """One trial's source array, checked against its scanned header; read into ``out``
        when it matches the file's shape and dtype (see ``_npy.read_array``)."""
        rel = self.trial_file(variable, trial_id)
        with self.tree.open(rel) as fp:
            return read_array(fp, self.tree.where(rel), self.headers[variable, int(trial_id)], out=out)

    def read_meta(self, rel: str) -> np.ndarray:
        with self.tree.open(rel) as fp:
            return read_array(fp, self.tree.where(rel), self.meta_files[rel])


def find_sources(
    paths: Sequence[Path | str | Remote], storage_options: Mapping[str, Any] | None = None
) -> list[Source]:
    """Mouse folders and zips named by ``paths``: each is a mouse folder, a mouse zip, or a
    folder holding several of either; on disk, or a URL (``s3://bucket/prefix``, read
    with ``storage_options``). A folder wins over a zip of the same name."""
    found: list[Source] = []
    for raw in paths:
        remote = _remote(raw, storage_options)
        if remote is not None:
            found.extend(find_remote(remote))
            continue
        path = Path(raw)  # type: ignore[arg-type]
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder")
        if _is_mouse(path):
            found.append(path)
            continue
        if not path.is_dir():
            raise SourceError(f"{path}: not a mouse folder, a mouse .zip, or a folder of them")
        # Hidden entries are unfinished outputs (".x.zip.partial") or junk, never mice.
        children = sorted(p for p in path.iterdir() if not p.name.startswith(".") and _is_mouse(p))
        folders = {p.name for p in children if p.is_dir()}
        chosen = [p for p in children if p.is_dir() or p.stem not in folders]
        if not chosen:
            raise SourceError(
                f"{path}: holds no Sensorium mouse (no sub-folder with data/, no .zip)"
            )
        found.extend(chosen)
    return found


def _is_mouse(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".zip"
    return (path / "data").is_dir()


def is_remote_source(source: object) -> bool:
    """Whether ``source`` names a mouse in object storage (a URL or a ``Remote``)."""
    return isinstance(source, Remote) or (isinstance(source, str) and is_url(source))


def _remote(source: object, storage_options: Mapping[str, Any] | None) -> Remote | None:
    if isinstance(source, Remote):
        return source
    if isinstance(source, str) and is_url(source):
        return Remote.of(source, storage_options)
    return None


def open_tree(path: Path | str | Remote, storage_options: Mapping[str, Any] | None = None) -> SourceTree:
    """List the files of one mouse folder or zip, rejecting unsafe or malformed archives."""
    remote = _remote(path, storage_options)
    if remote is not None:
        if is_zip_url(remote):
            return _open_zip(remote, ZipReader(zip_object(remote)))
        return _checked_folder(remote, _check_name(remote.name, remote), list_folder(remote))
    path = Path(path)  # type: ignore[arg-type]
    if path.name in ("", ".", ".."):
        # "convert ." inside a mouse folder: the mouse is named after the folder itself.
        path = Path(os.path.abspath(path))
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise SourceError(f"{path}: not a .zip archive nor a mouse folder")
        return _open_zip(path, ZipReader(path))
    if not path.is_dir():
        raise SourceError(f"{path}: no such file or folder")
    name = _check_name(path.name, path)
    files: dict[str, int] = {}
    for root, _dirs, names in os.walk(path):
        for entry in names:
            full = Path(root) / entry
            try:
                info = full.stat()
            except OSError as e:
                raise SourceError(f"{full}: could not be read ({reason(e)})") from e
            if not stat.S_ISREG(info.st_mode):
                raise SourceError(f"{full}: {_kind(info.st_mode)}, not a regular file; refusing to read it")
            files[full.relative_to(path).as_posix()] = info.st_size
    return _checked_folder(path, name, files)


def _checked_folder(path: Source, name: str, files: dict[str, int]) -> SourceTree:
    if not files:
        if isinstance(path, Remote):
            raise SourceError(f"{path}: no such object or folder (nothing under this prefix)")
        raise SourceError(f"{path}: empty folder, expected a Sensorium mouse (data/, meta/)")
    if not any(rel.startswith("data/") for rel in files):
        raise SourceError(f"{path}: not a Sensorium mouse folder (no data/ folder)")
    return SourceTree(path, name, files)


def _open_zip(path: Source, archive: ZipReader) -> SourceTree:
    infos = archive.members()
    tops: set[str] = set()
    for info in infos:
        member = PurePosixPath(info.filename)
        if info.filename.startswith(("/", "\\")) or ".." in member.parts or re.match(
            r"^[A-Za-z]:", info.filename
        ):
            raise SourceError(
                f"{path}:{info.filename}: unsafe zip entry (absolute path or '..'); refusing the archive"
            )
        if member.parts and member.parts[0] != _MACOSX:
            tops.add(member.parts[0] if len(member.parts) > 1 or info.is_dir() else "")
    folders = sorted(t for t in tops if t)
    if len(folders) != 1 or "" in tops:
        found = ", ".join(sorted(tops - {""})) or "files at the top level"
        raise SourceError(
            f"{path}: expected exactly one top-level mouse folder holding data/ and meta/, "
            f"found: {found}"
        )
    name = _check_name(folders[0], f"{path}:{folders[0]}/")
    prefix = name + "/"
    files: dict[str, int] = {}
    for info in infos:
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        where = f"{path}:{info.filename}"
        if rel in files:
            raise SourceError(f"{where}: appears twice in the zip; refusing the archive")
        check_member(info, where)
        files[rel] = info.file_size
    if not any(rel.startswith("data/") for rel in files):
        raise SourceError(f"{path}: the mouse folder {folders[0]}/ has no data/ folder")
    return SourceTree(path, folders[0], files, prefix, archive)


def scan_source(path: Path | str | Remote, storage_options: Mapping[str, Any] | None = None) -> SourceLayout:
    """Check one mouse folder or zip and describe it, reading headers but no trial data;
    ``path`` may be a URL, read with ``storage_options`` (see ``find_sources``)."""
    tree = open_tree(path, storage_options)
    warnings: list[str] = []
    ids_by_variable: dict[str, dict[int, str]] = {v: {} for v in fmt.VARIABLES}
    meta_rels: list[str] = []
    for rel in sorted(tree.files):
        parts = rel.split("/")
        if parts[-1].startswith("."):
            warnings.append(f"{tree.where(rel)}: hidden file skipped")
            continue
        if parts[0] == "data" and len(parts) >= 2 and parts[1] in ids_by_variable:
            match = _TRIAL_FILE.match("/".join(parts[2:]))
            if match is None:
                raise SourceError(
                    f"{tree.where(rel)}: file name is not an integer trial id ({_TRIAL_RULE})"
                )
            ids_by_variable[parts[1]][int(match.group(1))] = rel
        elif parts[0] == "meta" and rel.endswith(".npy"):
            meta_rels.append(rel)
        elif rel != "config.json":
            warnings.append(f"{tree.where(rel)}: not part of the Sensorium format, skipped")

    for variable, ids in ids_by_variable.items():
        if not ids:
            raise SourceError(f"{tree.where(f'data/{variable}/')}: no trial files")
    all_ids = sorted(set().union(*(set(ids) for ids in ids_by_variable.values())))
    for trial_id in all_ids:
        missing = [v for v in fmt.VARIABLES if trial_id not in ids_by_variable[v]]
        if missing:
            present = ", ".join(v for v in fmt.VARIABLES if v not in missing)
            raise SourceError(
                f"{tree.where(f'data/{missing[0]}/{trial_id}.npy')}: missing "
                f"(trial {trial_id} has files for {present})"
            )

    headers: dict[tuple[str, int], NpyHeader] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    seen_dtypes: dict[str, list[str]] = {}
    for variable in fmt.VARIABLES:
        rels = [ids_by_variable[variable][trial_id] for trial_id in all_ids]
        for trial_id, rel, header in zip(all_ids, rels, tree.headers(rels), strict=True):
            _check_trial_header(tree, rel, variable, header)
            headers[variable, trial_id] = header
        # The shape most files share is the expected one, so one odd file is the one named.
        counts = Counter(headers[variable, i].shape for i in all_ids)
        shapes[variable], agreeing = counts.most_common(1)[0]
        for trial_id in all_ids:
            if headers[variable, trial_id].shape != shapes[variable]:
                raise SourceError(
                    f"{tree.where(ids_by_variable[variable][trial_id])}: shape "
                    f"{headers[variable, trial_id].shape}, expected {shapes[variable]} "
                    f"like {agreeing} other data/{variable} files"
                )
        seen_dtypes[variable] = list(dict.fromkeys(str(headers[variable, i].dtype) for i in all_ids))
        dtypes[variable] = np.result_type(*(np.dtype(d) for d in seen_dtypes[variable]))
    t_pad = shapes[fmt.RESPONSES][-1]
    for variable, shape in shapes.items():
        if shape[-1] != t_pad:
            raise SourceError(
                f"{tree.where(ids_by_variable[variable][all_ids[0]])}: {shape[-1]} frames "
                f"(last axis), but responses have {t_pad}; every variable must share T_pad"
            )

    meta_files: dict[str, NpyHeader] = {}
    for rel, header in zip(meta_rels, tree.headers(meta_rels), strict=True):
        meta_files[rel] = header
        _check_meta_header(tree, rel, header, shapes)

    trial_ids = np.asarray(all_ids, dtype=np.int64)
    layout = SourceLayout(
        tree=tree,
        trial_ids=trial_ids,
        trial_tiers=np.empty(0, dtype=object),
        headers=headers,
        shapes=shapes,
        dtypes=dtypes,
        source_dtypes={v: ",".join(d) for v, d in seen_dtypes.items()},
        meta_files=meta_files,
        config=_read_config(tree),
        warnings=warnings,
    )
    tiers = _read_tiers(layout)
    if not (tiers == fmt.STATISTICS_TIER).any():
        raise SourceError(
            f"{tree.where(f'{fmt.META_TRIALS}/tiers.npy')}: no trial of tier "
            f"{fmt.STATISTICS_TIER!r} has files; the store's statistics are computed from "
            f"the {fmt.STATISTICS_TIER} tier, so a mouse without one cannot be converted"
        )
    order = fmt.stored_trial_order(trial_ids, tiers)
    object.__setattr__(layout, "trial_ids", trial_ids[order])
    object.__setattr__(layout, "trial_tiers", tiers[order])
    return layout


def _check_trial_header(tree: SourceTree, rel: str, variable: str, header: NpyHeader) -> None:
    if len(header.shape) != _SOURCE_NDIM[variable]:
        raise SourceError(
            f"{tree.where(rel)}: {len(header.shape)}-D array of shape {header.shape}, "
            f"expected {_SOURCE_NDIM[variable]}-D with time last"
        )
    if header.dtype.kind not in "biuf":
        raise SourceError(
            f"{tree.where(rel)}: dtype {header.dtype} is not numeric (expected floating point)"
        )


def _check_meta_header(tree: SourceTree, rel: str, header: NpyHeader, shapes: dict[str, tuple[int, ...]]) -> None:
    """Provided statistics must have one trial's source shape: the reader applies them per
    frame, and numpy would silently broadcast a (1, T) or (T,) array over every neuron."""
    parts = rel.split("/")
    if len(parts) == 5 and parts[:2] == ["meta", "statistics"] and parts[2] in shapes and parts[3] == "all":
        variable = parts[2]
        if header.shape != shapes[variable] or header.dtype.kind not in "biuf":
            raise SourceError(
                f"{tree.where(rel)}: provided statistic of shape {header.shape} dtype {header.dtype}, "
                f"expected the shape of one {variable} trial, {shapes[variable]}, and a numeric dtype"
            )


def _read_tiers(layout: SourceLayout) -> np.ndarray:
    rel = f"{fmt.META_TRIALS}/tiers.npy"
    where = layout.tree.where(rel)
    if rel not in layout.meta_files:
        raise SourceError(f"{where}: missing; it gives each trial its tier (train, oracle, ...)")
    tiers = layout.read_meta(rel)
    if tiers.ndim != 1 or tiers.dtype.kind not in "US":
        raise SourceError(
            f"{where}: expected a 1-D array of tier names, found shape {tiers.shape} dtype {tiers.dtype}"
        )
    largest = int(layout.trial_ids.max())
    if largest >= len(tiers):
        raise SourceError(
            f"{where}: has {len(tiers)} entries but trial {largest} has files; "
            "tiers.npy must cover every trial id"
        )
    try:
        names = tiers[layout.trial_ids].astype(str)
    except UnicodeDecodeError as e:
        raise SourceError(f"{where}: tier names are not ASCII text ({reason(e)})") from e
    unknown = sorted(set(names.tolist()) - set(fmt.TIERS))
    if unknown:
        trial = int(layout.trial_ids[list(names).index(unknown[0])])
        raise SourceError(
            f"{where}: unknown tier {unknown[0]!r} (trial {trial}); every trial with files must "
            f"have one of the tiers {', '.join(fmt.TIERS)} (split names such as 'validation' "
            "are not tiers)"
        )
    return np.asarray(names, dtype=object)


def _read_config(tree: SourceTree) -> dict[str, Any] | None:
    if "config.json" not in tree.files:
        return None
    where = tree.where("config.json")
    too_big = f"{where}: larger than {MAX_CONFIG_BYTES} bytes; config.json is copied into the store's attributes"
    if tree.files["config.json"] > MAX_CONFIG_BYTES:
        raise SourceError(too_big)
    with tree.open("config.json") as fp:
        raw = fp.read(MAX_CONFIG_BYTES + 1)  # to its end, so a zip member's CRC is checked
    if len(raw) > MAX_CONFIG_BYTES:
        raise SourceError(too_big)
    try:
        config = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as e:
        raise SourceError(f"{where}: nested deeper than {MAX_CONFIG_DEPTH} levels") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise SourceError(f"{where}: not valid JSON ({reason(e)})") from e
    if not isinstance(config, dict):
        raise SourceError(f"{where}: expected a JSON object")
    if _depth(config) > MAX_CONFIG_DEPTH:
        raise SourceError(f"{where}: nested deeper than {MAX_CONFIG_DEPTH} levels")
    return config


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


def _depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest
