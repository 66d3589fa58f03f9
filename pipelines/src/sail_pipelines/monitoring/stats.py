"""The statistics behind `sail monitor`: each rule gives an effect (held to its limit in
params.yaml) and a p-value (the evidence that the effect is not the noise of a small window).

The p-values are two-sample tests against the training split itself, so they account for both
the window's size and the split's: Kolmogorov-Smirnov for numbers and dates, a chi-square test
of homogeneity on the bins the PSI is computed over (numbers on the split's quantile bins,
categories with the ones too rare to be expected five times in the window pooled), and
Fisher's exact test for a share of rows (out of range, missing) against the split's own share.
`judge` corrects them for the number of checks of one run (Holm) and reports a rule only when
both the effect crosses its limit and the corrected p-value is below `min_p_value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

EPSILON = 1e-4  # stands in for an empty bin's share, so PSI stays finite
MIN_EXPECTED = 5  # a category expected fewer times than this in the window is pooled
POOLED = "(rare or unseen)"


@dataclass(frozen=True)
class Finding:
    """One rule on one feature (or the predictions), before the family-wise correction."""

    subject: str
    rule: str
    effect: float
    limit: float
    p_value: float
    line: str  # the breach as one line, without its evidence
    test: str = ""  # rules that share one test (a category's PSI and share) count once in Holm


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    e = np.clip(expected / max(expected.sum(), EPSILON), EPSILON, None)
    a = np.clip(actual / max(actual.sum(), EPSILON), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), open at both ends."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(
        np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
    ).astype(float)


def homogeneity(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the chi-square test that two count vectors come from one distribution."""
    from scipy.stats import chi2_contingency

    keep = (a + b) > 0
    if keep.sum() < 2 or a.sum() == 0 or b.sum() == 0:
        return 1.0
    return float(chi2_contingency(np.vstack([a[keep], b[keep]]), correction=False).pvalue)


def excess(hits: int, rows: int, reference_hits: int, reference_rows: int) -> tuple[float, float]:
    """How far a window's share of rows (out of range, missing) exceeds the training split's,
    and the one-sided p-value of Fisher's exact test."""
    from scipy.stats import fisher_exact

    effect = hits / rows - reference_hits / max(reference_rows, 1)
    if hits == 0 or effect <= 0:
        return effect, 1.0
    table = [[hits, rows - hits], [reference_hits, reference_rows - reference_hits]]
    return effect, float(fisher_exact(table, alternative="greater").pvalue)


def numeric_drift(reference: np.ndarray, served: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """PSI on the reference's bins with its chi-square p-value, and the KS statistic with its."""
    from scipy.stats import ks_2samp

    counts, window = binned(reference, edges), binned(served, edges)
    ks = ks_2samp(reference, served)
    return {
        "psi": psi(counts, window),
        "psi_p_value": homogeneity(counts, window),
        "ks": float(ks.statistic),
        "p_value": float(ks.pvalue),
    }


def label(value: Any) -> str:
    """A category as text, alike whether pandas read it from a CSV (2007.0) or JSON gave it."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if hasattr(value, "item") else value)


def category_drift(reference: pd.Series, served: Sequence[Any]) -> dict[str, Any]:
    """PSI with the chi-square p-value, and the largest change of one category's share with its
    own, against the reference's labels (present values as text). Categories the reference holds
    too rarely to be expected MIN_EXPECTED times in the window share one bin with values it never
    holds."""
    counts = reference.value_counts()
    window = pd.Series([label(v) for v in served], dtype=object).value_counts()
    kept = [c for c in counts.index if counts[c] / counts.sum() * len(served) >= MIN_EXPECTED]
    names = [*kept, POOLED]
    a = np.array([counts[c] for c in kept] + [counts.sum() - counts[kept].sum()], dtype=float)
    inside = window.reindex(kept).fillna(0).to_numpy(dtype=float)
    b = np.append(inside, len(served) - inside.sum())
    if a[-1] == 0 and b[-1] == 0:
        names, a, b = names[:-1], a[:-1], b[:-1]
    change = b / max(b.sum(), 1) - a / max(a.sum(), 1)
    worst = int(np.argmax(np.abs(change)))
    # that one share against the rest, Bonferroni-corrected for picking it among len(names)
    one = homogeneity(
        np.array([a[worst], a.sum() - a[worst]]), np.array([b[worst], b.sum() - b[worst]])
    )
    return {
        "psi": psi(a, b),
        "p_value": homogeneity(a, b),
        "share_change": float(change[worst]),
        "share_of": names[worst],
        "share_p_value": min(1.0, one * len(names)),
        "unseen": int(len(served) - window.reindex(counts.index).fillna(0).sum()),
    }


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: family-wise error at most alpha over all the p-values."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def judge(findings: Sequence[Finding], alpha: float) -> list[dict[str, Any]]:
    """Every finding with its Holm-adjusted p-value and whether it is a breach: an effect past
    its limit with evidence past alpha. The family is the distinct tests of the run."""
    tests = {(f.subject, f.test or f.rule): f.p_value for f in findings}
    family = dict(zip(tests, holm(list(tests.values())) if tests else [], strict=True))
    adjusted = [family[(f.subject, f.test or f.rule)] for f in findings]
    return [
        {
            "subject": f.subject,
            "rule": f.rule,
            "effect": f.effect,
            "limit": f.limit,
            "p_value": f.p_value,
            "p_adjusted": float(q),
            "breach": bool(f.effect > f.limit and q < alpha),
            "line": f"{f.line} (p = {q:.2g} after Holm over {len(tests)} tests)",
        }
        for f, q in zip(findings, adjusted, strict=True)
    ]
