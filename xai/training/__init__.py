"""Training and evaluating classifiers: Adam with early stopping, classification metrics,
and the CNN-vs-DNN comparison of the coursework."""

from xai.training.compare import Comparison, ComparisonRow, compare, default_models
from xai.training.evaluate import Evaluation, evaluate, predict
from xai.training.fit import EpochRecord, TrainResult, fit

__all__ = [
    "Comparison",
    "ComparisonRow",
    "EpochRecord",
    "Evaluation",
    "TrainResult",
    "compare",
    "default_models",
    "evaluate",
    "fit",
    "predict",
]
