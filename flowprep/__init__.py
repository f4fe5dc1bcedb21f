"""flowprep: build Video-DAS datasets (raw layouts -> chunked zarr stores of frames, labels, flow)."""

__version__ = "0.1.0"
