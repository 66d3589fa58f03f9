"""The closed sets of names params.yaml chooses from, and each metric's direction. Plain data
without pydantic: serving, signing and the metric functions read them without loading the models
(params.py)."""

TASKS = ("classification", "regression")
# Bundle signatures: a key pair (the default) or one shared secret.
SIGNING_SCHEMES = ("ed25519", "hmac-sha256")
SEARCH_KINDS = ("int", "float", "choice")
# "confidence": a regression fails only when the whole interval of the difference lies beyond the
# tolerance; "point": when the point estimate does (noise included).
REGRESSION_RULES = ("confidence", "point")
# How the API and batch treat a value beyond the training range: answer and name it, or 422.
OUT_OF_RANGE = ("flag", "refuse")
# How the API and batch treat a record the outlier detector flags: answer and flag it, or 422.
OUTLIERS = ("flag", "refuse")

# Direction of every metric the evaluate step computes: True when higher is better.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "f1": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "mcc": True,
    "balanced_accuracy": True,
    "f1_weighted": True,
    "precision_weighted": True,
    "recall_weighted": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
METRICS_BY_TASK = {
    # f1, precision and recall are for the positive class when binary, macro averages otherwise.
    "classification": (
        "roc_auc",
        "f1",
        "accuracy",
        "precision",
        "recall",
        "mcc",
        "balanced_accuracy",
        "f1_weighted",
        "precision_weighted",
        "recall_weighted",
    ),
    "regression": ("rmse", "mae", "r2"),
}
