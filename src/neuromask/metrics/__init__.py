"""Numbers about masks: ROI densities, similarity, localisation against ground truth."""

from neuromask.metrics.roi import roi_densities, top_rois

__all__ = ["roi_densities", "top_rois"]
