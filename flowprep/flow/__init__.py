"""Optical flow for stores: engines (DIS, ptlflow models), tiling, validity, the `flowprep flow` job, KITTI/.flo I/O."""
