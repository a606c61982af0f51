"""Read a TensorFlow checkpoint (the V2 "tensor bundle": `<prefix>.index` and `<prefix>.data-00000-of-00001`)
without TensorFlow, so that converting musicnn's weights needs nothing beyond numpy.

The index is a LevelDB-format table (uncompressed, as TensorFlow writes it): a footer pointing at an index block,
whose entries point at data blocks, whose entries map a variable's name to a `BundleEntryProto` (dtype, shape,
shard, offset, size, crc32c). The bytes of each tensor lie at (offset, size) in its data shard, little-endian.
Only what a checkpoint of plain float variables needs is read; anything else is refused with its name.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from core.errors import DataError

TABLE_MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one table block (keys are prefix-compressed)."""
    block, kind = data[offset : offset + size], data[offset + size]
    if kind != 0:
        raise DataError(path, f"block at {offset} is compressed (type {kind}); only uncompressed tables are read")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end, pos, key, entries = len(block) - 4 - 4 * restarts, 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _fields(message: bytes) -> dict[int, list]:
    """A protobuf message's fields: number -> values (varints as ints, length-delimited as bytes)."""
    fields, pos = {}, 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", message, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", message, pos)[0], pos + 8
        else:
            raise ValueError(f"protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_checkpoint(prefix: str | Path, skip_suffixes: tuple[str, ...] = ("/Adam", "/Adam_1")) -> dict[str, np.ndarray]:
    """Every variable of a TF2/TF1 V2 checkpoint as numpy arrays, by name.

    Args:
        prefix: the checkpoint's prefix (`folder/` for musicnn's files `.index` and `.data-00000-of-00001`).
        skip_suffixes: variables whose names end so are not read (the optimiser's slots).
    """
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    if not index_path.is_file():
        raise DataError(index_path, "no checkpoint index here")
    data = index_path.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise DataError(index_path, "not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # the meta-index handle, unused
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    shards: dict[int, bytes] = {}
    tensors = {}
    for _, handle in _block(data, index_offset, index_size, index_path):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(data, offset, size, index_path):
            name = key.decode()
            if not name or name.endswith(skip_suffixes):  # "" is the bundle's header
                continue
            entry = _fields(value)
            dtype = entry.get(1, [0])[0]
            if dtype not in DTYPES or 7 in entry:
                raise DataError(index_path, f"variable {name!r}: dtype {dtype} or a sliced tensor is not supported")
            shape = [(_fields(d).get(1, [0])[0]) for d in _fields(entry.get(2, [b""])[0]).get(2, [])]
            shard, offset_, size_ = entry.get(3, [0])[0], entry.get(4, [0])[0], entry.get(5, [0])[0]
            if shard not in shards:
                pattern = Path(f"{prefix}.data-{shard:05d}-of-*")  # a prefix may end in "/" (musicnn's do)
                candidates = sorted(pattern.parent.glob(pattern.name))
                if not candidates:
                    raise DataError(pattern, f"data shard {shard} of the checkpoint is missing")
                shards[shard] = candidates[0].read_bytes()
            raw = shards[shard][offset_ : offset_ + size_]
            array = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
            if array.size != int(np.prod(shape)):
                raise DataError(index_path, f"variable {name!r}: {array.size} values for shape {shape}")
            tensors[name] = array.reshape(shape).astype(DTYPES[dtype])
    return tensors
