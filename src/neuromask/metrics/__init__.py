"""Numbers about masks: ROI densities, similarity, prob_CNN."""

from neuromask.metrics.prob_cnn import (
    mean_off_diagonal,
    prob_cnn_matrix,
    symmetric_prob_cnn,
)
from neuromask.metrics.roi import roi_densities, top_rois
from neuromask.metrics.similarity import cosine_matrix, roi_vectors

__all__ = [
    "cosine_matrix",
    "mean_off_diagonal",
    "prob_cnn_matrix",
    "roi_densities",
    "roi_vectors",
    "symmetric_prob_cnn",
    "top_rois",
]
