"""Stores ingested from the tiny synthetic replicas, shared by the vdatrain tests (read-only)."""

import pytest
from click.testing import CliRunner

from flowprep.cli import cli as flowprep_cli


@pytest.fixture(scope="session")
def tiny_store(synth_tiny, tmp_path_factory):
    """tiny_store(dataset, split, offsets="-1,0,1", pairs="bwd:1") -> path of an ingested store, made once per
    session for each set of arguments (flow by DIS when `pairs` is given)."""
    made = {}

    def make(dataset: str, split: str, offsets: str | None = None, pairs: str | None = None):
        key = (dataset, split, offsets, pairs)
        if key not in made:
            out = tmp_path_factory.mktemp("stores") / f"{dataset}_{split}.zarr"
            args = ["ingest", dataset, "--root", str(synth_tiny), "--split", split, "--out", str(out), "--workers", "1"]
            result = CliRunner().invoke(flowprep_cli, args + (["--offsets", offsets] if offsets else []))
            assert result.exit_code == 0, result.output
            if pairs:
                result = CliRunner().invoke(flowprep_cli, ["flow", str(out), "--model", "dis", "--pairs", pairs])
                assert result.exit_code == 0, result.output
            made[key] = out
        return made[key]

    return make


class OpenCVCrops:
    """The test oracle of the crop geometry: what resizing with OpenCV then cropping gives, computed from a
    native window with one `cv2.warpAffine` (the CPU path the loader had before crops moved to the device)."""

    @staticmethod
    def matrix(box, window):
        """Affine map from crop pixel (x, y) to window coordinates (for cv2.WARP_INVERSE_MAP)."""
        import numpy as np

        s, (wy0, _, wx0, _) = box.scale, window
        return np.array([[1 / s, 0, (box.x0 + 0.5) / s - 0.5 - wx0],
                         [0, 1 / s, (box.y0 + 0.5) / s - 0.5 - wy0]], np.float64)

    @classmethod
    def sample(cls, box, data, window, nearest: bool = False):
        """(wh, ww[, C]) native window -> (h, w[, C]) crop of `box`, flipped when it says so."""
        import cv2
        import numpy as np

        src = np.ascontiguousarray(data).view(np.uint8) if data.dtype == bool else np.ascontiguousarray(data)
        out = cv2.warpAffine(src, cls.matrix(box, window), (box.w, box.h), borderMode=cv2.BORDER_REPLICATE,
                             flags=(cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP)
        out = out.reshape(box.h, box.w, *src.shape[2:])
        return np.ascontiguousarray(out[:, ::-1] if box.flip else out).astype(data.dtype)

    @classmethod
    def flow(cls, box, data, window):
        """(wh, ww, 2) native flow in pixels -> the crop's: resampled, scaled, mirrored with u negated."""
        import numpy as np

        out = cls.sample(box, data.astype(np.float32), window) * np.float32(box.scale)
        if box.flip:
            out[..., 0] *= -1
        return out

    @staticmethod
    def margin_mask(native):
        """(H, W) float32 1/0 of `margin_bounds`."""
        import numpy as np

        from vdatrain.data.geometry import margin_bounds

        y0, y1, x0, x1 = margin_bounds(native)
        mask = np.zeros(native, np.float32)
        mask[y0:y1, x0:x1] = 1
        return mask


@pytest.fixture(scope="session")
def opencv():
    """The OpenCV crop oracle (`OpenCVCrops`)."""
    return OpenCVCrops
