"""vdatrain: train and evaluate domain-adaptive video semantic segmentation on flowprep stores."""

__version__ = "0.1.0"
