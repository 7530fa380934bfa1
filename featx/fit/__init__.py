"""Cross-validating and fitting scikit-learn classifiers on cached features.

``svm``, ``logreg`` and ``mlp`` read one layer into memory (float16 converted block
by block into a single float32 array) and use scikit-learn's ``cross_validate``
with shuffled, seeded stratified folds. ``sgd`` never holds the feature matrix: it
streams blocks of rows from the HDF5 file into ``partial_fit``
(:mod:`featx.fit.streaming`; ``SGD_BLOCK_ROWS`` set here takes effect there).

Modules: :mod:`~featx.fit.spec` (what a fit is), :mod:`~featx.fit.cv` and
:mod:`~featx.fit.streaming` (running the folds), :mod:`~featx.fit.data` (the
caches read), :mod:`~featx.fit.heldout` (a held-out data folder's cache, made
as the training cache), :mod:`~featx.fit.run` (:func:`fit` itself and the model
file).
"""

from featx.choices import CLASSIFIERS
from featx.fit.cv import cross_validate, cv_in_memory, used_views
from featx.fit.data import (
    HEAD_MODELS,
    best_layer,
    check_compatible,
    check_head_layer,
    evaluate_test,
    has_head,
    head_source,
    is_head_layer,
    labelled_rows,
)
from featx.fit.heldout import held_out_cache, held_out_caches
from featx.fit.result import CVOutcome, FitResult
from featx.fit.run import default_model_path, fit, model_meta, record_fit
from featx.fit.scoring import chosen_params, one_blas_thread, top_score
from featx.fit.spec import DEFAULT_VALUES, SCORING, FitError, FitSpec, consensus, folds
from featx.fit.streaming import (
    SGD_BLOCK_ROWS,
    SGD_EPOCHS,
    cv_streaming,
    fit_sgd_streaming,
)

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_VALUES",
    "HEAD_MODELS",
    "SCORING",
    "SGD_BLOCK_ROWS",
    "SGD_EPOCHS",
    "CVOutcome",
    "FitError",
    "FitResult",
    "FitSpec",
    "best_layer",
    "check_compatible",
    "check_head_layer",
    "chosen_params",
    "consensus",
    "cross_validate",
    "cv_in_memory",
    "cv_streaming",
    "default_model_path",
    "evaluate_test",
    "fit",
    "fit_sgd_streaming",
    "folds",
    "has_head",
    "held_out_cache",
    "held_out_caches",
    "head_source",
    "is_head_layer",
    "labelled_rows",
    "model_meta",
    "one_blas_thread",
    "record_fit",
    "top_score",
    "used_views",
]
