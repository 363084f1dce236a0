"""Reads a PyTorch checkpoint (`torch.save` zip format) into NumPy arrays, without torch.

`replit/replit-code-v1_5-3b` ships only `pytorch_model.bin`, and torch is far too heavy a
dependency for reading a dictionary of arrays. A checkpoint is a zip holding `data.pkl`, a
pickle of the state dict, and one uncompressed member per storage. The pickle is read with
an unpickler that knows only the handful of globals a state dict of tensors refers to, so a
file can never make it import or call anything else; tensors become read-only memory maps of
their storage members. bfloat16 comes back as its raw 16-bit pattern in a uint16 array.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

# The storage classes `torch.save` names, by the NumPy type their bytes are read as.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# Pickles written by torch before 1.6 start with this protocol-2 encoding of a magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."

_LOCAL_HEADER = struct.Struct("<4s22xHH")


class TorchCheckpointError(ValueError):
    """A file that is not a PyTorch zip checkpoint of plain tensors, or is damaged."""


class _Sealed:
    """Refuses BUILD, the opcode that sets an object's state: nothing a pickle is handed can
    be changed after it was checked, nor between one load and the next."""

    def __setstate__(self, state: Any) -> NoReturn:
        raise pickle.UnpicklingError("tries to set the state of a tensor, storage or function")


@dataclass(frozen=True)
class _StorageType(_Sealed):
    dtype: type
    is_bfloat16: bool


@dataclass(frozen=True)
class _Storage(_Sealed):
    array: np.ndarray
    is_bfloat16: bool


@dataclass(frozen=True)
class _TensorRef(_Sealed):
    """A tensor as the pickle describes it; turned into an array once its name is known."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class _Function(_Sealed):
    function: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_rest: Any
) -> _TensorRef:
    """Stands in for `torch._utils._rebuild_tensor(_v2)`; the trailing arguments (grad flag,
    hooks, metadata) do not affect the values."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)):
        raise pickle.UnpicklingError("a tensor with a malformed offset, size or stride")
    if not all(_is_int(n) for n in size + stride) or len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor with a malformed size or stride")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    """Stands in for `torch._utils._rebuild_parameter`: an nn.Parameter is just its tensor."""
    return data


# Everything a checkpoint may name, and all it gets: sealed objects, or a type that cannot be
# changed (OrderedDict, which holds the hooks torch pickles with every tensor).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
    **{
        ("torch", name): _StorageType(dtype, name == "BFloat16Storage")
        for name, dtype in _STORAGE_DTYPES.items()
    },
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storages: _StorageFiles) -> None:
        super().__init__(io.BytesIO(data))
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refers to {module}.{name}, which a state dict of tensors never needs; "
                "refusing to load it"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _is_int(pid[4])
        ):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._storages.get(pid[2], pid[1], pid[4])


class _StorageFiles:
    """Memory maps of the storage members, each made once however many tensors share it."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._data = np.memmap(path, dtype=np.uint8, mode="r")
        self._cache: dict[str, _Storage] = {}

    def get(self, key: str, kind: _StorageType, numel: int) -> _Storage:
        if key in self._cache:
            return self._cache[key]
        member = f"{self._prefix}/data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise pickle.UnpicklingError(f"storage {member} is missing") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise pickle.UnpicklingError(f"storage {member} is compressed")
        itemsize = np.dtype(kind.dtype).itemsize
        if info.file_size != numel * itemsize:
            raise pickle.UnpicklingError(
                f"storage {member} holds {info.file_size} bytes, expected {numel * itemsize}"
            )
        start = self._data_start(info)
        if start + info.file_size > self._data.size:
            raise pickle.UnpicklingError(f"storage {member} runs past the end of the file")
        raw = self._data[start : start + info.file_size]
        storage = _Storage(raw.view(kind.dtype), kind.is_bfloat16)
        self._cache[key] = storage
        return storage

    def _data_start(self, info: zipfile.ZipInfo) -> int:
        """Where a member's bytes begin: after its local header, whose extra field may differ
        in length from the one in the central directory."""
        header = bytes(self._data[info.header_offset : info.header_offset + _LOCAL_HEADER.size])
        if len(header) < _LOCAL_HEADER.size:
            raise pickle.UnpicklingError(f"member {info.filename} runs past the end of the file")
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raise pickle.UnpicklingError(f"member {info.filename} has a corrupt header")
        return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def _materialize(path: Path, name: str, ref: _TensorRef) -> np.ndarray:
    numel = math.prod(ref.size)
    expected = 1
    for dim, step in zip(reversed(ref.size), reversed(ref.stride), strict=True):
        if dim > 1 and step != expected:
            _fail(
                path,
                f"tensor {name} is not contiguous (size {ref.size}, stride {ref.stride}); "
                "save it with .contiguous() or as safetensors",
            )
        expected *= dim
    if ref.offset + numel > ref.storage.array.size:
        _fail(path, f"tensor {name} runs past the end of its storage")
    return ref.storage.array[ref.offset : ref.offset + numel].reshape(ref.size)


def _fail(path: Path, message: str) -> NoReturn:
    raise TorchCheckpointError(f"{path}: {message}")


def read_torch_checkpoint(path: Path) -> list[tuple[str, np.ndarray, bool]]:
    """(name, array, is_bfloat16) for every tensor of the state dict in `path`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
    except OSError as error:
        _fail(path, f"cannot read ({error})")
    if head == _LEGACY_MAGIC:
        _fail(
            path,
            "legacy (pre-1.6) PyTorch format, which is not supported; re-save it with "
            "torch.save from torch >= 1.6 or convert it to safetensors",
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        _fail(path, f"not a PyTorch zip checkpoint; truncated or corrupt? ({error})")
    with archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            _fail(path, "not a PyTorch checkpoint (expected exactly one <name>/data.pkl)")
        prefix = pickles[0].split("/")[0]
        try:
            byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"  # older files have no record, and were all little-endian
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as error:
            _fail(path, f"corrupt checkpoint ({error})")
        if byteorder != "little":
            _fail(path, f"{byteorder}-endian checkpoints are not supported")
        try:
            data = archive.read(pickles[0])
            state = _StateDictUnpickler(data, _StorageFiles(path, archive, prefix)).load()
        except Exception as error:  # a hostile or damaged pickle can raise almost anything
            _fail(path, f"not a loadable state dict ({type(error).__name__}: {error})")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in state.items()
    ):
        _fail(path, "does not hold a state dict of tensors by name")
    return [
        (name, _materialize(path, name, ref), ref.storage.is_bfloat16)
        for name, ref in state.items()
    ]
