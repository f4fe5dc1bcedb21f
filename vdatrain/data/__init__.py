"""Data pipeline over flowprep stores: crop geometry (frames, labels, flows together), samples, loaders."""
