"""Review by cluster: the model's detections grouped (:mod:`.clusters`), one clinician answer per group turned into
training labels and export states (:mod:`.answers`).

The Label Studio side: ``python -m ls_backend.review`` (:mod:`.command`) publishes one task per cluster
(:mod:`.tasks`, picture by :mod:`.render`, members located by :mod:`.members`) in the patient's review project;
answers come back through the backend's webhook (:mod:`.feedback`), are kept in the project's state
(:mod:`.store`), join its retraining (:mod:`.training`) and its detection exports (:mod:`.exports`)."""

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
