"""Segmentation and temporal metrics."""
