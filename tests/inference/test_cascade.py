"""The checked student's rule (zerohar.inference.cascade): bounds from calibration windows, unsure windows."""

import numpy as np
import pytest

from zerohar.errors import ZeroharError
from zerohar.inference.cascade import CascadeCheck, calibrate


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def pair(rng, n, dim=32, noise=0.05):
    """Teacher embeddings and a student's, the student off by a small random error (both unit length)."""
    t = unit(rng.normal(size=(n, dim)).astype(np.float32))
    s = unit(t + noise * rng.normal(size=(n, dim)).astype(np.float32))
    return s, t


def test_bounds_are_the_quantiles_of_the_error_projections():
    rng = np.random.default_rng(0)
    s, t = pair(rng, 200)
    P = unit(rng.normal(size=(5, 32)).astype(np.float32))
    check = calibrate(s, t, P, quantile=0.9)
    proj = (t - s) @ P.T
    assert check.tau_pair.shape == (5, 5) and check.tau_label.shape == (5,)
    assert np.allclose(check.tau_pair[1, 3], np.quantile(np.abs(proj[:, 1] - proj[:, 3]), 0.9), atol=1e-6)
    assert np.allclose(check.tau_pair, check.tau_pair.T) and (np.diag(check.tau_pair) == 0).all()
    assert np.allclose(check.tau_label, np.quantile(np.abs(proj), 0.9, axis=0), atol=1e-6)
    wider = calibrate(s, t, P, quantile=1.0)
    assert (wider.tau_pair >= check.tau_pair - 1e-7).all() and check.windows == 200 and wider.quantile == 1.0


def test_windows_left_to_the_student_keep_the_teachers_label_when_errors_are_within_the_bounds():
    """With quantile 1 and windows whose errors are those of calibration windows, the bound holds for every window:
    every window the rule leaves to the student has the teacher's top label and the same unknown decision."""
    rng = np.random.default_rng(1)
    s_cal, t_cal = pair(rng, 300, noise=0.2)
    P = unit(rng.normal(size=(6, 32)).astype(np.float32))
    check = calibrate(s_cal, t_cal, P, quantile=1.0)
    t = unit(rng.normal(size=(2000, 32)).astype(np.float32))
    d = (t_cal - s_cal)[rng.integers(0, 300, 2000)]  # the calibration errors, reused
    s = t - d  # not unit length: scores are linear in the embedding, the bound is about d alone
    threshold = 0.05
    unsure = check.unsure(s @ P.T, threshold)
    kept = ~unsure
    assert 0 < kept.sum() < len(s)  # some windows are close calls, most are not
    assert ((s @ P.T).argmax(1)[kept] == (t @ P.T).argmax(1)[kept]).all()
    assert (((s @ P.T).max(1) < threshold)[kept] == ((t @ P.T).max(1) < threshold)[kept]).all()
    # and the rule is not vacuous: among the unsure windows some do change their label
    assert ((s @ P.T).argmax(1)[unsure] != (t @ P.T).argmax(1)[unsure]).any()


def test_a_student_equal_to_its_teacher_leaves_every_clear_window_to_itself():
    rng = np.random.default_rng(2)
    t = unit(rng.normal(size=(50, 16)).astype(np.float32))
    P = unit(rng.normal(size=(4, 16)).astype(np.float32))
    check = calibrate(t, t, P)
    assert (check.tau_pair == 0).all() and not check.unsure(t @ P.T).any()


def test_a_threshold_makes_windows_near_it_unsure():
    check = CascadeCheck(np.array([[0, 0.1], [0.1, 0]], np.float32), np.array([0.05, 0.05], np.float32), 0.99, 10)
    scores = np.array([[0.9, 0.2], [0.42, 0.1], [0.5, 0.45]], np.float32)
    assert check.unsure(scores).tolist() == [False, False, True]
    assert check.unsure(scores, threshold=0.4).tolist() == [False, True, True]
    assert check.unsure(np.zeros((0, 2), np.float32)).shape == (0,)


def test_bad_inputs_are_refused_in_one_sentence():
    rng = np.random.default_rng(3)
    s, t = pair(rng, 10)
    P = unit(rng.normal(size=(3, 32)).astype(np.float32))
    with pytest.raises(ZeroharError, match="calibration embeddings"):
        calibrate(s, t[:5], P)
    with pytest.raises(ZeroharError, match="quantile"):
        calibrate(s, t, P, quantile=0)
    with pytest.raises(ZeroharError, match="expected"):
        calibrate(s, t, P).unsure(np.zeros((4, 2)))
