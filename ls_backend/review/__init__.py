"""Review by cluster: the model's detections grouped (:mod:`.clusters`), one clinician answer per group turned into
training labels and export states (:mod:`.answers`)."""

from .answers import ACCEPTED, MIXED, REJECTED, REVIEW_WEIGHT, ClusterReview, ReviewLabels, review_labels
from .clusters import Cluster, Clustering, Detections, cluster_detections, review_order

__all__ = [
    "ACCEPTED",
    "MIXED",
    "REJECTED",
    "REVIEW_WEIGHT",
    "Cluster",
    "ClusterReview",
    "Clustering",
    "Detections",
    "ReviewLabels",
    "cluster_detections",
    "review_labels",
    "review_order",
]
