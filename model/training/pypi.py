"""Downloads pinned distributions from PyPI and reads what is inside them.

A pure-Python wheel is preferred (it holds the importable package and usually no tests); a
package that ships none is read from its sdist. Every file is checked against the SHA-256 that
PyPI publishes, and a small record beside it in the cache lets later builds run offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from email.message import Message
from email.parser import BytesParser
from pathlib import Path, PurePosixPath

import httpx

# The JSON form of the simple repository API (PEP 691), which is what pip reads.
PYPI_PROJECT_URL = "https://pypi.org/simple/{name}/"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class Distribution:
    """One downloaded distribution file and where it came from."""

    name: str
    version: str
    path: Path
    url: str
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalise_name(name: str) -> str:
    """A project name as file names spell it (PEP 503 normalisation, with underscores)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def file_release(filename: str) -> tuple[str, str] | None:
    """(normalised project name, version) of a wheel or sdist file name; None for others."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        return (normalise_name(parts[0]), parts[1]) if len(parts) in (5, 6) else None
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            name, sep, version = filename[: -len(suffix)].rpartition("-")
            return (normalise_name(name), version) if sep else None
    return None


def choose_file(files: list[dict], name: str, version: str) -> dict:
    """The release file to read from a project's simple-API file list: a wheel for any platform
    and Python 3, else the sdist. Yanked files are never chosen."""
    wanted = (normalise_name(name), version)
    release = [f for f in files if not f.get("yanked") and file_release(f["filename"]) == wanted]
    wheels = [
        f
        for f in release
        if f["filename"].endswith("-none-any.whl") and "py3" in f["filename"].split("-")[-3]
    ]
    sdists = [f for f in release if f["filename"].endswith(SDIST_SUFFIXES)]
    if not wheels and not sdists:
        raise LookupError(f"{name} {version} has neither a pure-Python wheel nor an sdist")
    return (wheels or sdists)[0]


def download(name: str, version: str, cache: Path, client: httpx.Client) -> Distribution:
    """Fetches `name==version` into `cache` unless a verified copy is already there."""
    record_path = cache / f"{name}-{version}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        path = cache / record["filename"]
        if path.exists() and sha256_of(path) == record["sha256"]:
            return Distribution(name, version, path, record["url"], record["sha256"])
    response = client.get(PYPI_PROJECT_URL.format(name=name), headers={"Accept": SIMPLE_JSON})
    response.raise_for_status()
    chosen = choose_file(response.json()["files"], name, version)
    sha256 = chosen["hashes"]["sha256"]
    path = cache / chosen["filename"]
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with client.stream("GET", chosen["url"]) as stream, partial.open("wb") as f:
        stream.raise_for_status()
        for block in stream.iter_bytes():
            f.write(block)
    if sha256_of(partial) != sha256:
        partial.unlink()
        raise ValueError(f"{chosen['filename']}: SHA-256 differs from PyPI's")
    partial.replace(path)
    distribution = Distribution(name, version, path, chosen["url"], sha256)
    record = {"filename": path.name, **asdict(distribution)}
    del record["path"]
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return distribution


def archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(path inside the archive, contents) of every regular file in a wheel, zip or tarball."""
    if path.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, archive.read(info)
        return
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile():
                extracted = archive.extractfile(member)
                if extracted is not None:
                    yield member.name, extracted.read()


def is_wheel(path: Path) -> bool:
    return path.suffix == ".whl"


def package_path(member: str, wheel: bool) -> str | None:
    """A member's path as a project sees it: an sdist's top folder removed. None for the
    archive's own metadata, which is not source."""
    parts = PurePosixPath(member).parts
    if wheel:
        return None if parts[0].endswith(".dist-info") else "/".join(parts)
    return "/".join(parts[1:]) or None


def read_metadata(path: Path) -> Message:
    """The core metadata: a wheel's `*.dist-info/METADATA` or an sdist's top-level PKG-INFO."""
    wheel = is_wheel(path)
    for member, data in archive_members(path):
        parts = PurePosixPath(member).parts
        if len(parts) != 2:
            continue
        if (wheel and parts[0].endswith(".dist-info") and parts[1] == "METADATA") or (
            not wheel and parts[1] == "PKG-INFO"
        ):
            return BytesParser().parsebytes(data)
    raise LookupError(f"{path.name} has no core metadata")
