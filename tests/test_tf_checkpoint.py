"""Pure-Python TF1 checkpoint reader: the musicnn wheel's checkpoints, crc32c, snappy, corruption."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from commercial98k.models.musicnn import MusicnnNet, _tf_to_torch, checkpoint_prefix
from commercial98k.models.tf_checkpoint import (
    CheckpointError,
    crc32c,
    masked_crc32c,
    read_checkpoint,
    read_index,
    snappy_decompress,
)


def test_reads_every_musicnn_variable_with_model_shapes() -> None:
    prefix = checkpoint_prefix("MSD_musicnn")
    entries, header = read_index(prefix + ".index")
    assert header.get("num_shards", 1) == 1
    tensors = read_checkpoint(prefix)  # verifies every tensor's crc32c
    assert set(tensors) == set(entries)
    for name, entry in entries.items():
        assert tensors[name].shape == entry.shape and tensors[name].dtype == np.float32, name
    # three Adam-era values per trainable variable: the variable, Adam and Adam_1 slots
    model_vars = {k: v for k, v in tensors.items() if "Adam" not in k and not k.endswith("_power")}
    assert len(model_vars) == 11 * 4 + 8 * 2 + 2 * 2
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)  # timbral 7 x int(0.4 * 96), 1.6 * 128 filters
    assert tensors["dense_1/kernel"].shape == (200, 50)
    assert np.all(tensors["batch_normalization_9/moving_variance"] > 0)
    # every model variable lands in a parameter of the same shape (strict load)
    net = MusicnnNet()
    state = _tf_to_torch(model_vars)
    net.load_state_dict(state, strict=True)
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert v.shape == state[k].shape, k
    # slots are the same shape as their variable
    np.testing.assert_array_equal(tensors["conv2d/kernel/Adam"].shape, tensors["conv2d/kernel"].shape)


def test_selected_names_and_missing_names() -> None:
    prefix = checkpoint_prefix("MTT_musicnn")
    sub = read_checkpoint(prefix, names=["dense/bias", "conv2d_5/kernel"])
    assert set(sub) == {"dense/bias", "conv2d_5/kernel"}
    assert sub["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    with pytest.raises(CheckpointError, match="not in checkpoint: nope"):
        read_checkpoint(prefix, names=["nope"])


def test_crc32c_known_vectors_and_array_input() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of 0xff
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 1000, 12345):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        arr = np.frombuffer(data, dtype=np.uint8)
        assert crc32c(data) == crc32c(arr) == crc32c(arr.view(np.uint8).copy())
    # masking is TF's rotate-and-add
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_corrupt_data_is_detected(tmp_path: Path) -> None:
    src = Path(checkpoint_prefix("MSD_musicnn"))
    dst = tmp_path / "ckpt"
    dst.mkdir()
    for name in (".index", ".data-00000-of-00001"):
        shutil.copy(str(src) + "/" + name, dst / name)
    entries, _ = read_index(dst / ".index")
    target = entries["dense_1/bias"]
    data = bytearray((dst / ".data-00000-of-00001").read_bytes())
    data[target.offset + 3] ^= 0x40
    (dst / ".data-00000-of-00001").write_bytes(bytes(data))
    prefix = f"{dst}/"
    with pytest.raises(CheckpointError, match="dense_1/bias: crc32c mismatch"):
        read_checkpoint(prefix, names=["dense_1/bias"])
    assert read_checkpoint(prefix, names=["dense_1/bias"], verify=False)["dense_1/bias"].shape == (50,)
    (dst / ".index").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="bad table magic"):
        read_index(dst / ".index")


def test_snappy_literals_and_overlapping_copies() -> None:
    # "abcd" literal, then copy(offset=4, len=8) overlapping its own output, then literal "!"
    block = bytes([13, (4 - 1) << 2]) + b"abcd" + bytes([((8 - 4) << 2) | 1, 4]) + bytes([0]) + b"!"
    assert snappy_decompress(block) == b"abcdabcdabcd!"
    # 2-byte-offset copy
    block = bytes([7, (3 - 1) << 2]) + b"xyz" + bytes([((4 - 1) << 2) | 2, 3, 0])
    assert snappy_decompress(block) == b"xyzxyzx"
    with pytest.raises(CheckpointError):
        snappy_decompress(bytes([5, (2 - 1) << 2]) + b"ab" + bytes([((4 - 1) << 2) | 2, 9, 0]))


def test_checkpoint_tensors_match_torch_layout() -> None:
    """A TF HWIO conv kernel applied by the torch layer equals a direct numpy correlation."""
    prefix = checkpoint_prefix("MSD_musicnn")
    ckpt = read_checkpoint(prefix)
    net = MusicnnNet()
    net.load_state_dict(_tf_to_torch({k: v for k, v in ckpt.items() if "Adam" not in k}))
    x = np.random.default_rng(1).normal(size=(1, 1, 40, 3)).astype(np.float32)
    out = net.temporal[2](torch.from_numpy(x)).detach().numpy()  # kernel 32 x 1, valid
    k = ckpt["conv2d_4/kernel"][:, 0, 0, :]  # [32, 51]
    ref = np.stack([x[0, 0, t:t + 32, :].T @ k for t in range(40 - 32 + 1)])  # [T, F, C]
    np.testing.assert_allclose(out[0].transpose(1, 2, 0), ref + ckpt["conv2d_4/bias"], rtol=1e-4, atol=1e-4)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_every: int = 16) -> bytes:
    """A LevelDB table block with prefix-compressed keys and restart points."""
    body, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    for r in restarts:
        body += struct.pack("<I", r)
    return bytes(body + struct.pack("<I", len(restarts)))


def _snappy_literal(data: bytes) -> bytes:
    """Raw snappy stream made of literals only (valid, if uncompressed)."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 60):
        chunk = data[i:i + 60]
        out += bytes([(len(chunk) - 1) << 2]) + chunk
    return bytes(out)


def _entry(dtype: int, shape: tuple[int, ...], offset: int, raw: bytes) -> bytes:
    shape_msg = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(n) for n in shape))
    return (b"\x08" + _varint(dtype) + b"\x12" + _varint(len(shape_msg)) + shape_msg
            + b"\x20" + _varint(offset) + b"\x28" + _varint(len(raw)) + b"\x35" + struct.pack("<I", masked_crc32c(raw)))


def test_synthetic_bundle_with_snappy_blocks_and_prefix_keys(tmp_path: Path) -> None:
    tensors = {"layer/bias": np.arange(5, dtype=np.float32), "layer/kernel": np.ones((2, 3), np.float64) * 0.5,
               "layer/kernel_steps": np.array([7, -9], np.int64), "other/w": np.float32([[1.5]]),
               "other/w2": np.float32(3.0)}
    data, entries = bytearray(), [(b"", b"\x08\x01")]  # BundleHeaderProto: num_shards = 1
    dtypes = {np.float32: 1, np.float64: 2, np.int64: 9}
    for name, arr in tensors.items():
        raw = arr.tobytes()
        entries.append((name.encode(), _entry(dtypes[arr.dtype.type], arr.shape, len(data), raw)))
        data += raw
    table = bytearray()
    index_entries = []
    for i, chunk in enumerate((entries[:3], entries[3:])):  # two data blocks, the second snappy-compressed
        compressed = i == 1
        contents = _block(chunk)
        payload = _snappy_literal(contents) if compressed else contents
        kind = b"\x01" if compressed else b"\x00"
        handle = _varint(len(table)) + _varint(len(payload))
        table += payload + kind + struct.pack("<I", masked_crc32c(payload + kind))
        index_entries.append((chunk[-1][0], handle))
    index = _block(index_entries)
    index_handle = _varint(len(table)) + _varint(len(index))
    table += index + b"\x00" + struct.pack("<I", masked_crc32c(index + b"\x00"))
    footer = (_varint(0) + _varint(0) + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    (tmp_path / "m.index").write_bytes(bytes(table + footer))
    (tmp_path / "m.data-00000-of-00001").write_bytes(bytes(data))

    out = read_checkpoint(tmp_path / "m")
    assert set(out) == set(tensors)
    for name, arr in tensors.items():
        np.testing.assert_array_equal(out[name], arr)
        assert out[name].dtype == arr.dtype and out[name].shape == arr.shape
    # a flipped bit in an index block is caught by the block checksum
    broken = bytearray(table + footer)
    broken[5] ^= 0x01
    (tmp_path / "m.index").write_bytes(bytes(broken))
    with pytest.raises(CheckpointError, match="crc32c mismatch"):
        read_index(tmp_path / "m.index")
