"""Networks: the ResNet family (ResNet-50, ResNeXt-50, SE-ResNeXt-50), registry, weights,
ensembles."""

from apexmer.models.ensemble import Ensemble
from apexmer.models.layers import SEModule
from apexmer.models.registry import (
    ModelInfo,
    count_parameters,
    create_model,
    describe_models,
    list_models,
    model_info,
    register_model,
)
from apexmer.models.resnet import Bottleneck, ResNet
from apexmer.models.weights import LoadReport, load_pretrained, save_weights

__all__ = [
    "Bottleneck",
    "Ensemble",
    "LoadReport",
    "ModelInfo",
    "ResNet",
    "SEModule",
    "count_parameters",
    "create_model",
    "describe_models",
    "list_models",
    "load_pretrained",
    "model_info",
    "register_model",
    "save_weights",
]
