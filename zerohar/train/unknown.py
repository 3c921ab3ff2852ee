""""None of these": the score below which `classify` names a window `unknown`, calibrated when a run is saved.

A window's score for a label is the cosine of its embedding with the label's prototype (what the label index
returns). When the window's activity is among the candidates, its best score is high; when it is not, the best
score is that of some other, dissimilar label and is low. The threshold must sit between the two without any
window of the classes a user will type: those are unseen, and their scores run lower than the seen classes'
(on HAPT fold1, the median best score of unseen-class windows among unseen candidates is 0.455; of held-out
seen-class windows among seen candidates, 0.586). A threshold at a low quantile of the seen windows' scores,
the obvious rule, therefore names almost every unseen window `unknown` (the 1% quantile keeps 8% of them).

The rule is relative to the run's own score scale instead:

    threshold = UNKNOWN_FRACTION x median best score of the held-out seen-class windows (validation subjects)

With the fraction 0.4, on HAPT fold1 (zerohar's demo run, 798 held-out seen and 2,174 unseen-class windows)
it keeps 99.9% of the unseen-class windows whose class is a candidate and names `unknown` 87% of those whose
class was removed from the candidates (81% for seen classes). A window whose class is absent but a similar one
present (standing without "standing", but with "sitting") scores high and is not caught: no score rule can.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: The threshold as a fraction of the held-out median best score (see the module docstring for its measure).
UNKNOWN_FRACTION = 0.4
UNKNOWN_RULE = ("a window is unknown when its best score is below {f:g} x the median best score of the run's "
                "held-out seen-class windows ({m:.3f}): threshold {t:.3f}")


def unknown_threshold(best_scores: np.ndarray, fraction: float = UNKNOWN_FRACTION) -> dict | None:
    """The calibration record stored in a run's `model.json` under `unknown` (None without held-out windows).

    Args:
        best_scores: `(n,)` best cosine score of each held-out seen-class window among the seen-class prototypes.
        fraction: the threshold as a fraction of their median.
    """
    s = np.asarray(best_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return None
    m = float(np.median(s))
    t = max(0.0, fraction * m)
    return {"threshold": t, "fraction": fraction, "median_best_score": m, "windows": int(len(s)),
            "rule": UNKNOWN_RULE.format(f=fraction, m=m, t=t)}
