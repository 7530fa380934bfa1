"""Option values shared by the commands and the code that checks them.

Importable without torch or scikit-learn: the CLI builds its help from them,
:mod:`featx.fit` checks a fit's options with them, and :mod:`featx.head` (torch)
needs no import of :mod:`featx.fit` for them.
"""

from __future__ import annotations

#: Every classifier: scikit-learn's (the keys of ``pipelines.CLASSIFIERS``, a
#: test holds them equal) and AlexNet's own head, fine-tuned in torch on pool5.
CLASSIFIERS = ("svm", "logreg", "ridge", "mlp", "sgd", "head")
#: What ``head_train`` accepts: the layers of the head that learn (the others
#: keep the weights' values), the default first.
HEAD_TRAIN_LAYERS = ("fc6-fc8", "fc7-fc8", "fc8")
