"""Training and evaluating classifiers: Adam with early stopping, classification metrics
(with ROC and precision-recall curves), the CNN-vs-DNN comparison of the coursework,
cross-validation and hyper-parameter search."""

from xai.training.compare import Comparison, ComparisonRow, compare, default_models
from xai.training.cv import CVResult, FoldResult, cross_validate, fold_indices
from xai.training.evaluate import Evaluation, evaluate, predict, predict_proba, rank_auc
from xai.training.fit import EpochRecord, TrainResult, fit
from xai.training.search import SearchResult, Trial, search, trials_of

__all__ = [
    "CVResult",
    "Comparison",
    "ComparisonRow",
    "EpochRecord",
    "Evaluation",
    "FoldResult",
    "SearchResult",
    "TrainResult",
    "Trial",
    "compare",
    "cross_validate",
    "default_models",
    "evaluate",
    "fit",
    "fold_indices",
    "predict",
    "predict_proba",
    "rank_auc",
    "search",
    "trials_of",
]
