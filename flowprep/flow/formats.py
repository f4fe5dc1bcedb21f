"""Flow files other tools use, each read to (flow (H, W, 2) float32 pixels, valid (H, W) bool) and written from it.

- kitti (.png, the reference's storage): 3-channel uint16, R = u * 64 + 2^15, G = v * 64 + 2^15,
  B = 1 where valid; range |u|, |v| < 512 px, step 1/64 px.
- flo (Middlebury): b"PIEH", int32 width, int32 height, then float32 (u, v) per pixel, row-major.
- pfm (FlyingThings3D): "PF", "W H", a scale whose sign is the byte order, then float32 (u, v, 0)
  per pixel, rows from the BOTTOM up.
- flo5 (HDF5, the Spring benchmark's): a dataset "flow" of (H, W, 2) floats.
- viper (.npz, VIPER's ground-truth flow): arrays "u" and "v" (float16); |value| > 512 or NaN means
  no flow (as ptlflow reads them).
Formats without a mask read as valid wherever the vector is finite and in range; writing one, the
invalid pixels become NaN (pfm, flo5, viper; .flo keeps the vectors), and exports put the mask beside
it as a PNG.
These are our own readers (ptlflow's helpers cost an 11 s import); the tests check them against
ptlflow's on the same files. Every reader checks a file's declared size before it allocates anything:
sides of at most `MAX_SIDE` px, the bytes the header promises actually present, HDF5 datasets stored in
the file itself (no external links or storage), zip members of a bounded size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError

KITTI_LIMIT = (65535 - 32768) / 64  # 511.98 px
MAX_SIDE = 16384  # px: an 8K frame is 7680 wide


def _check_size(path, w: int, h: int) -> None:
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise FlowprepError(f"{path}: declares a {w}x{h} flow (sides of 1..{MAX_SIDE} px): not a flow file")


def read_kitti(path) -> tuple[np.ndarray, np.ndarray]:
    """-> flow (H, W, 2) float32 pixels, valid (H, W) bool."""
    with open(path, "rb") as f:
        head = f.read(24)  # PNG signature, then the IHDR chunk: width and height, big-endian
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise FlowprepError(f"{path}: not a PNG file")
    _check_size(path, int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FlowprepError(f"{path}: not a readable PNG")
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint16:
        raise FlowprepError(f"{path}: not a KITTI flow PNG (need 16-bit, 3 channels; got {img.dtype} {img.shape})")
    b, g, r = img[..., 0], img[..., 1], img[..., 2]  # OpenCV reads BGR
    flow = np.stack([(r.astype(np.float32) - 32768) / 64, (g.astype(np.float32) - 32768) / 64], -1)
    valid = b > 0
    flow[~valid] = 0
    return flow, valid


def write_kitti(path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Vectors beyond the format's +-512 px range are written invalid, never wrapped."""
    valid = np.ones(flow.shape[:2], bool) if valid is None else valid.astype(bool)
    valid = valid & (np.abs(flow) < KITTI_LIMIT).all(-1) & np.isfinite(flow).all(-1)
    enc = np.clip(np.rint(np.nan_to_num(flow) * 64 + 32768), 0, 65535).astype(np.uint16)
    img = np.stack([valid.astype(np.uint16), enc[..., 1], enc[..., 0]], -1)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not be written")


def read_flo(path) -> np.ndarray:
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"PIEH" or len(head) < 12:
            raise FlowprepError(f"{path}: not a Middlebury .flo file (bad magic)")
        w, h = (int(v) for v in np.frombuffer(head[4:12], "<i4"))  # Python ints: 8 w h cannot wrap around
        _check_size(path, w, h)
        size, want = Path(path).stat().st_size, 12 + 8 * w * h
        if size != want:
            raise FlowprepError(f"{path}: {size} bytes, expected {want} for {w}x{h}")
        return np.frombuffer(f.read(want - 12), "<f4").reshape(h, w, 2).copy()


def write_flo(path, flow: np.ndarray) -> None:
    h, w = flow.shape[:2]
    Path(path).write_bytes(b"PIEH" + np.array([w, h], "<i4").tobytes() + flow.astype("<f4").tobytes())


def resize_flow(flow: np.ndarray, valid: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a flow field and scale its vectors with it (the reference forgot the scaling)."""
    h, w = flow.shape[:2]
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    ok = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out, ok


VIPER_LIMIT = 512.0  # ptlflow reads VIPER vectors beyond this as missing


def _finite(flow: np.ndarray) -> np.ndarray:
    return np.isfinite(flow).all(-1)


def read_pfm(path) -> np.ndarray:
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"PF", b"Pf"):
            raise FlowprepError(f"{path}: not a PFM file (header {header[:8]!r})")
        try:
            w, h = (int(v) for v in f.readline(64).split())
            scale = float(f.readline(64))
        except ValueError:
            raise FlowprepError(f"{path}: not a PFM file (bad size or scale line)") from None
        _check_size(path, w, h)
        if not np.isfinite(scale) or scale == 0:
            raise FlowprepError(f"{path}: not a PFM file (scale {scale})")
        channels = 3 if header == b"PF" else 1
        want = w * h * channels * 4
        data = np.frombuffer(f.read(want), "<f4" if scale < 0 else ">f4")
    if data.size != w * h * channels:
        raise FlowprepError(f"{path}: {data.size} values, expected {w * h * channels} for {w}x{h}x{channels} "
                            f"(truncated)")
    image = np.flipud(data.reshape(h, w, channels)).astype(np.float32)
    if channels < 2:
        raise FlowprepError(f"{path}: a one-channel PFM holds no flow")
    return np.ascontiguousarray(image[..., :2])


def write_pfm(path, flow: np.ndarray) -> None:
    h, w = flow.shape[:2]
    data = np.concatenate([flow.astype("<f4"), np.zeros((h, w, 1), "<f4")], -1)
    Path(path).write_bytes(f"PF\n{w} {h}\n-1.0\n".encode() + np.flipud(data).tobytes())


def read_flo5(path) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            link = f.get("flow", getlink=True)
            if link is None:
                raise FlowprepError(f"{path}: no 'flow' dataset (not a .flo5 file?)")
            if not isinstance(link, h5py.HardLink):  # an external or soft link reads another file's data
                raise FlowprepError(f"{path}: 'flow' is a link ({type(link).__name__}), not data held in this file")
            dset = f["flow"]
            if not isinstance(dset, h5py.Dataset) or dset.ndim != 3 or dset.shape[2] != 2 \
                    or dset.dtype.kind not in "fiu":
                raise FlowprepError(f"{path}: 'flow' is not an (H, W, 2) array of numbers")
            if dset.is_virtual or dset.external:
                raise FlowprepError(f"{path}: 'flow' keeps its data outside this file (virtual or external)")
            _check_size(path, int(dset.shape[1]), int(dset.shape[0]))
            return np.asarray(dset[()], dtype=np.float32)
    except OSError as e:
        raise FlowprepError(f"{path}: not an HDF5 file ({e})") from None


def write_flo5(path, flow: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("flow", data=flow.astype(np.float32), compression="gzip", compression_opts=5)


def read_viper(path) -> np.ndarray:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:  # the members' sizes before anything is decompressed
            sizes = {i.filename: i.file_size for i in z.infolist()}
    except (zipfile.BadZipFile, OSError) as e:
        raise FlowprepError(f"{path}: not a VIPER flow file (not an .npz: {e})") from None
    if any(sizes.get(f"{k}.npy", 0) > MAX_SIDE * MAX_SIDE * 4 + 4096 for k in "uv"):
        raise FlowprepError(f"{path}: arrays larger than a {MAX_SIDE}x{MAX_SIDE} flow: not a VIPER flow file")
    try:
        with np.load(path, allow_pickle=False) as z:
            flow = np.stack([z["u"], z["v"]], -1).astype(np.float32)
    except (KeyError, ValueError, OSError) as e:
        raise FlowprepError(f"{path}: not a VIPER flow file (needs arrays u and v: {e})") from None
    flow[np.abs(flow) > VIPER_LIMIT] = np.nan
    return flow


def write_viper(path, flow: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, u=flow[..., 0].astype(np.float16), v=flow[..., 1].astype(np.float16))


def _masked(read):
    """`read(path) -> flow` as (flow, valid): valid where finite; invalid vectors become 0."""
    def wrapped(path):
        flow = read(path)
        valid = _finite(flow)
        flow = np.where(valid[..., None], flow, 0).astype(np.float32)
        return flow, valid
    return wrapped


def _filled(write, fill: float):
    """`write(path, flow)` with the invalid pixels set to `fill`."""
    def wrapped(path, flow, valid=None):
        out = flow.astype(np.float32).copy()
        if valid is not None:
            out[~valid.astype(bool)] = fill
        write(path, out)
    return wrapped


FORMATS = {  # name -> (extension, read(path) -> (flow, valid), write(path, flow, valid), carries its own mask)
    "kitti": (".png", read_kitti, write_kitti, True),
    "flo": (".flo", _masked(read_flo), lambda path, flow, valid=None: write_flo(path, flow), False),  # vectors kept
    "pfm": (".pfm", _masked(read_pfm), _filled(write_pfm, np.nan), False),
    "flo5": (".flo5", _masked(read_flo5), _filled(write_flo5, np.nan), False),
    "viper": (".npz", _masked(read_viper), _filled(write_viper, np.nan), False),
}


def format_of(path, fmt: str | None = None) -> str:
    """The format named, or the one of `path`'s extension."""
    if fmt:
        if fmt not in FORMATS:
            raise FlowprepError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
        return fmt
    suffix = Path(str(path)).suffix.lower()
    for name, (ext, *_rest) in FORMATS.items():
        if suffix == ext:
            return name
    raise FlowprepError(f"{path}: no flow format has the extension {suffix!r} (give --format: {', '.join(FORMATS)})")


def read_flow(path, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> flow (H, W, 2) float32 pixels (0 where invalid), valid (H, W) bool."""
    return FORMATS[format_of(path, fmt)][1](path)


def write_flow(path, flow: np.ndarray, valid: np.ndarray | None, fmt: str) -> None:
    FORMATS[fmt][2](path, flow, valid)
