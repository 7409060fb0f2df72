"""Evidence that ``phone_watch``'s domains (subject groups) carry a real shift.

Used by ``scripts/build_sensor_data.py``, which writes these numbers into ``phone_watch.json`` and the
README: per domain, the subjects' ages, Timed-Up-and-Go durations and movement statistics; per
grouping, the val - target gap of ridge classifiers trained leave-one-domain-out, compared with
random subject partitions of the same sizes.
"""
from __future__ import annotations

import numpy as np

from mmdg.data.sensors import CLASSES, DOMAINS_BY, MODALITIES


def _features(x: np.ndarray) -> np.ndarray:
    """Per-channel mean, std, min, max and mean absolute difference of windows (N, C, T)."""
    return np.concatenate([x.mean(2), x.std(2), x.min(2), x.max(2), np.abs(np.diff(x, axis=2)).mean(2)], 1)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == k] == k) for k in np.unique(y)]))


class RidgeLodo:
    """Ridge classifiers on window features, trained on groups of subjects' train windows.

    Features are standardised once over all train windows; per-subject Gram matrices make a fit
    on any group of subjects one small linear solve (cheap enough for random-partition controls).
    """

    def __init__(self, feats: np.ndarray, label: np.ndarray, test: np.ndarray, subject: np.ndarray,
                 lam: float = 1.0):
        mu, sd = feats[~test].mean(0), feats[~test].std(0) + 1e-8
        self.a = np.c_[(feats - mu) / sd, np.ones(len(feats))]
        self.label, self.test, self.subject, self.lam = label, test, subject, lam
        onehot = np.eye(len(CLASSES))[label]
        self.subjects = np.unique(subject)
        self.gram = {s: self.a[~test & (subject == s)].T @ self.a[~test & (subject == s)] for s in self.subjects}
        self.cross = {s: self.a[~test & (subject == s)].T @ onehot[~test & (subject == s)] for s in self.subjects}

    def gap(self, group_of: dict) -> dict[str, dict[str, float]]:
        """Per held-out group: balanced accuracy on the other groups' test windows (``val``, the
        classifier trained on their train windows) and on the held-out group's test windows."""
        group = np.array([group_of[s] for s in self.subject])
        out = {}
        for g in sorted(set(group_of.values())):
            sources = [s for s in self.subjects if group_of[s] != g]
            w = np.linalg.solve(sum(self.gram[s] for s in sources) + self.lam * np.eye(self.a.shape[1]),
                                sum(self.cross[s] for s in sources))
            scores = {}
            for name, sel in (("val", self.test & (group != g)), ("target", self.test & (group == g))):
                scores[name] = _balanced_accuracy(self.label[sel], (self.a[sel] @ w).argmax(1))
            out[str(g)] = {"val": round(scores["val"], 4), "target": round(scores["target"], 4),
                           "gap": round(scores["val"] - scores["target"], 4)}
        return out


def shift_evidence(arrays: dict[str, np.ndarray], subjects: dict[str, dict], tug_s: dict[str, list[float]],
                   controls: int = 100) -> dict:
    """Numbers behind the domain choice (written to the metadata and README)."""
    ids = np.array([f"s{k:02d}" for k in arrays["subject"]])
    label, test = arrays["label"].astype(np.int64), arrays["split"] == 1
    x = {m: arrays[m].astype(np.float32) for m in MODALITIES}
    ridge = RidgeLodo(np.concatenate([_features(x["phone"]), _features(x["watch"])], 1), label, test, ids)
    walk_std = np.linalg.norm(x["phone"][:, :3], axis=1).std(1)        # phone |acc| std per window
    turn_gyro = np.linalg.norm(x["watch"][:, 3:], axis=1).mean(1)      # watch |gyro| mean per window
    ages = np.array([subjects[s]["age"] for s in subjects], dtype=np.float64)
    mean_tug = np.array([np.mean(tug_s[s]) for s in subjects])
    out = {"tug_age_correlation": round(float(np.corrcoef(ages, mean_tug)[0, 1]), 3)}
    for by, names in DOMAINS_BY.items():
        group = np.array([subjects[s]["domain"][by] for s in ids])
        per = {}
        for d in names:
            members = [s for s in subjects if subjects[s]["domain"][by] == d]
            tug = np.concatenate([tug_s[s] for s in members])
            orient = [o for s in members for o in subjects[s]["phone_orientation"].values()]
            per[d] = {"subjects": len(members), "ages": sorted(subjects[s]["age"] for s in members),
                      "female": sum(subjects[s]["gender"] == "F" for s in members),
                      "tug_s_mean": round(float(tug.mean()), 2), "tug_s_std": round(float(tug.std()), 2),
                      "walking_phone_acc_std": round(float(walk_std[(group == d) & (label == 2)].mean()), 2),
                      "turning_watch_gyro": round(float(turn_gyro[(group == d) & (label == 3)].mean()), 2),
                      "phone_orientation": {o: orient.count(o) for o in sorted(set(orient))}}
        gaps = ridge.gap({s: subjects[s]["domain"][by] for s in subjects})
        out[by] = {"domains": per, "ridge_lodo": gaps,
                   "mean_gap": round(float(np.mean([v["gap"] for v in gaps.values()])), 4)}
    # control: random subject groups of the age-domain sizes
    sizes = [out["age"]["domains"][d]["subjects"] for d in DOMAINS_BY["age"]]
    rng, names, control = np.random.default_rng(0), sorted(subjects), []
    for _ in range(controls):
        perm = rng.permutation(len(names))
        of = {names[i]: int(np.searchsorted(np.cumsum(sizes), rank, side="right")) for rank, i in enumerate(perm)}
        gaps = ridge.gap(of)
        control.append(float(np.mean([v["gap"] for v in gaps.values()])))
    control = np.array(control)
    out["random_groups_control"] = {
        "partitions": controls, "sizes": sizes, "mean_gap": round(float(control.mean()), 4),
        "std_gap": round(float(control.std()), 4),
        "fraction_at_least_age_gap": round(float(np.mean(control >= out["age"]["mean_gap"])), 3)}
    return out
