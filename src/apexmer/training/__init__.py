"""Training: focal loss, batch augmentation, and the training engine."""

from apexmer.training.augment import AugmentConfig, augment_batch
from apexmer.training.losses import FocalLoss, class_balanced_alpha

__all__ = ["AugmentConfig", "FocalLoss", "augment_batch", "class_balanced_alpha"]
