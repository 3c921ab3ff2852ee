"""The checked student's rule (zerohar.inference.cascade): bounds from calibration windows, unsure windows."""

import numpy as np
import pytest

from zerohar.errors import ZeroharError
from zerohar.inference.cascade import AUDIT_EVERY, REFRESH, CascadeCheck, CheckedStream, calibrate


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


# ---------------------------------------------------------------------------------------------- CheckedStream
def drifting(rng, n, dim=32, late=0.3):
    """Teacher and student embeddings of a stream whose student error is small in its first quarter and `late` in
    noise after it (a recording whose later activities the student knows less well)."""
    t = unit(rng.normal(size=(n, dim)).astype(np.float32))
    noise = np.where(np.arange(n)[:, None] < n // 4, 0.02, late).astype(np.float32)
    return unit(t + noise * rng.normal(size=(n, dim)).astype(np.float32)), t


def run_stream(s, t, P, sizes, **kw):
    """A CheckedStream over `s` in batches of `sizes` (cycled), its first bounds from the first 256 windows."""
    stream = CheckedStream(s[:256], t[:256], P, **kw)
    out, a, k = [], 0, 0
    while a < len(s):
        b = min(len(s), a + sizes[k % len(sizes)])
        out.append(stream.embed(s[a:b], lambda rows, a=a: t[a + rows]))
        a, k = b, k + 1
    return np.concatenate(out), stream


def test_the_audit_sends_every_nth_window_of_the_stream_to_the_teacher_whatever_the_batches():
    rng = np.random.default_rng(4)
    s, t = drifting(rng, 3000)
    P = unit(rng.normal(size=(5, 32)).astype(np.float32))
    one, st1 = run_stream(s, t, P, [3000])
    many, st2 = run_stream(s, t, P, [37, 500, 1, 999])
    assert np.array_equal(one, many)  # the same embeddings however the caller cuts the stream
    assert st1.audited == st2.audited == len(range(0, 3000, AUDIT_EVERY))
    assert np.array_equal(one[::AUDIT_EVERY], t[::AUDIT_EVERY])  # every audited window has the teacher's embedding
    assert st1.refreshes == st1.audited // REFRESH and st1.check.windows == 256 + st1.refreshes * REFRESH
    kept = ~np.isclose(one, t).all(1)
    assert st1.checked == len(s) - kept.sum()  # every window not left to the student was counted
    rec = st1.record()
    assert rec["audited_windows"] == st1.audited and rec["worn_windows"] == 3000 and rec["audit_every"] == AUDIT_EVERY
    assert rec["checked_share"] == pytest.approx(st1.checked / 3000)


def test_bounds_that_follow_the_stream_catch_an_error_the_start_understated():
    """The student's error grows after the calibration windows: bounds from the start alone let wrong labels
    through; the audited stream widens its bounds and keeps more of the teacher's labels, at the cost of checks."""
    rng = np.random.default_rng(5)
    s, t = drifting(rng, 8000)
    P = unit(rng.normal(size=(6, 32)).astype(np.float32))
    fixed, st0 = run_stream(s, t, P, [1000], every=0)
    followed, st1 = run_stream(s, t, P, [1000])
    ref = (t @ P.T).argmax(1)
    same0 = (fixed @ P.T).argmax(1) == ref
    same1 = (followed @ P.T).argmax(1) == ref
    assert st0.audited == 0 and st0.refreshes == 0 and st0.check.windows == 256
    assert (st1.check.tau_pair > st0.check.tau_pair + 1e-6).sum() > 0.9 * (6 * 5)  # every pair's bound widened
    assert same1.mean() > same0.mean() + 0.1 and st1.checked > st0.checked
    # the error grew at window 2,000; the refresh at 4,096 is the first whose pool holds enough of it (32 of 320
    # windows, more than the 1% the quantile leaves out): from there on the labels are the teacher's
    late = slice(2 * AUDIT_EVERY * REFRESH, None)
    assert same1[late].mean() > 0.99 and same0[late].mean() < 0.8


def test_a_bad_audit_setting_is_refused():
    rng = np.random.default_rng(6)
    s, t = pair(rng, 20)
    P = unit(rng.normal(size=(3, 32)).astype(np.float32))
    with pytest.raises(ZeroharError, match="audits"):
        CheckedStream(s, t, P, every=-1)
    with pytest.raises(ZeroharError, match="audits"):
        CheckedStream(s, t, P, refresh=0)

