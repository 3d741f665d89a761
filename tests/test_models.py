"""SoftmaxClassifier and MLPClassifier: scikit-learn's contract, the objective, the solvers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

import crossent
from crossent import reference
from crossent.explain import explain
from crossent.models import MLPClassifier, SoftmaxClassifier, split_pipeline
from numgrad import numerical_grad


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        SoftmaxClassifier(),
        SoftmaxClassifier(penalty="l1", solver="sgd"),
        MLPClassifier(hidden_layer_sizes=(16,)),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_same_probabilities_as_logistic_regression(digits, C):
    X_tr, X_te, y_tr, _ = digits
    n = len(X_tr)
    ours = SoftmaxClassifier(
        solver="lbfgs", penalty="l2", alpha=1 / (C * n), tol=1e-8, max_iter=2000
    ).fit(X_tr, y_tr)
    with threadpool_limits(1):
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X_tr, y_tr)
    np.testing.assert_allclose(ours.predict_proba(X_te), ref.predict_proba(X_te), atol=1e-3)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)


def test_objective_is_the_documented_formula(digits):
    X, _, y, _ = digits
    alpha = 0.01
    clf = SoftmaxClassifier(alpha=alpha, tol=1e-8, max_iter=1000).fit(X, y)
    W, b = clf.coef_, clf.intercept_
    S = X @ W.T + b  # (N, C)
    ce = reference.cross_entropy(S, y)
    J = ce + alpha * 0.5 * np.sum(W**2)  # the bias is not penalized
    assert clf.loss_curve_[-1] == pytest.approx(J, rel=1e-10)
    # at the optimum the gradient G^T X + alpha W (and sum G) vanishes
    P = np.exp(S - logsumexp(S, axis=1, keepdims=True))
    G = (P - np.eye(10)[y]) / len(y)
    assert np.abs(G.T @ X + alpha * W).max() < 1e-6
    assert np.abs(G.sum(axis=0)).max() < 1e-6


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet", None])
def test_objective_gradient_matches_finite_differences(model, penalty):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)), rng.integers(0, 3, size=12)
    kw = dict(
        penalty=penalty,
        alpha=0.3,
        l1_ratio=0.4,
        label_smoothing=0.1,
        class_weight={0: 2.0, 2: 0.5},
        max_iter=1,
        solver="adam",
        random_state=0,
    )
    est = MLPClassifier((4, 3), **kw) if model == "mlp" else SoftmaxClassifier(**kw)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    theta = est._theta + rng.normal(scale=0.5, size=est._theta.size)  # away from 0 for L1
    grad = np.empty_like(theta)
    est._objective(theta, X, y, grad, "adam")
    scratch = np.empty_like(theta)
    num = numerical_grad(lambda t: est._objective(t, X, y, scratch, "adam"), theta)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_digits_accuracy_targets(digits):
    X_tr, X_te, y_tr, y_te = digits
    linear = SoftmaxClassifier().fit(X_tr, y_tr)  # alpha="auto": 1/N, as LogisticRegression()
    assert linear.score(X_te, y_te) >= 0.965
    mlp = MLPClassifier(random_state=0).fit(X_tr, y_tr)
    assert mlp.score(X_te, y_te) >= 0.975


def test_l1_proximal_step_gives_exact_zeros(digits):
    X_tr, X_te, y_tr, y_te = digits
    l1 = SoftmaxClassifier(
        penalty="l1",
        alpha=0.01,
        solver="sgd",
        random_state=0,
        max_iter=40,
        tol=0.0,
        n_iter_no_change=40,
    )
    with pytest.warns(ConvergenceWarning):
        l1.fit(X_tr, y_tr)
    l2 = SoftmaxClassifier(penalty="l2", alpha=0.01).fit(X_tr, y_tr)
    assert np.mean(l1.coef_ == 0) > 0.2
    assert np.mean(l2.coef_ == 0) < 0.05  # only constant pixels
    assert l1.score(X_te, y_te) > 0.9
    assert np.all(l1.intercept_ != 0)  # the bias is not penalized


def test_solver_sgd_and_adam_learn_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    for solver in ("sgd", "adam"):
        clf = SoftmaxClassifier(
            solver=solver,
            max_iter=30,
            random_state=0,
            learning_rate_init=0.05 if solver == "sgd" else 0.01,
        )
        with pytest.warns(ConvergenceWarning):
            clf.fit(X_tr, y_tr)
        assert clf.score(X_te, y_te) > 0.94
        assert clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
        assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_same_seed_same_model_other_seed_other_model(digits):
    X_tr, _, y_tr, _ = digits
    kw = dict(max_iter=3, solver="sgd")
    fits = []
    for seed in (1, 1, 2):
        with pytest.warns(ConvergenceWarning):
            fits.append(SoftmaxClassifier(random_state=seed, **kw).fit(X_tr, y_tr).coef_)
    np.testing.assert_array_equal(fits[0], fits[1])
    assert not np.array_equal(fits[0], fits[2])


def test_warm_start_continues_exactly(digits):
    X_tr, _, y_tr, _ = digits
    kw = dict(solver="sgd", random_state=0, tol=0.0, n_iter_no_change=100)
    with pytest.warns(ConvergenceWarning):
        straight = SoftmaxClassifier(max_iter=6, **kw).fit(X_tr, y_tr)
    with pytest.warns(ConvergenceWarning):
        two = SoftmaxClassifier(max_iter=2, **kw).fit(X_tr, y_tr)
    two.set_params(warm_start=True, max_iter=4)
    with pytest.warns(ConvergenceWarning):
        two.fit(X_tr, y_tr)
    np.testing.assert_array_equal(two.coef_, straight.coef_)
    assert two.n_iter_ == 6 and two.loss_curve_ == straight.loss_curve_


def test_early_stopping_keeps_the_best_epoch(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, random_state=0)
    clf.fit(X_tr, y_tr)
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_partial_fit(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = SoftmaxClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes: expected"):
        clf.partial_fit(X_tr, y_tr)
    for _ in range(5):
        clf.partial_fit(X_tr, y_tr, classes=np.arange(10))
    assert clf.score(X_te, y_te) > 0.93
    assert clf.n_iter_ == 5
    with pytest.raises(ValueError, match="y: expected labels among"):
        clf.partial_fit(X_tr[:2], [0, 11])


def test_string_labels_and_binary_decision_function():
    X, y = make_blobs(n_samples=60, centers=2, random_state=0)
    labels = np.where(y == 1, "dog", "cat")
    clf = SoftmaxClassifier().fit(X, labels)
    d = clf.decision_function(X)
    assert d.shape == (60,)
    np.testing.assert_array_equal(clf.classes_[(d > 0).astype(int)], clf.predict(X))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X))
    assert clf.coef_.shape == (2, 2)


def test_label_smoothing_makes_predictions_less_confident(digits):
    X_tr, X_te, y_tr, _ = digits
    sharp = SoftmaxClassifier(alpha=1e-4).fit(X_tr, y_tr).predict_proba(X_te).max(1).mean()
    smooth = SoftmaxClassifier(alpha=1e-4, label_smoothing=0.2).fit(X_tr, y_tr)
    assert smooth.predict_proba(X_te).max(1).mean() < sharp - 0.05


def test_pipeline_and_grid_search():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SoftmaxClassifier())
    grid = GridSearchCV(pipe, {"softmaxclassifier__alpha": [1e-3, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_ == {"softmaxclassifier__alpha": 1e-3}
    assert grid.best_score_ > 0.9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": -1.0}, ValueError, "alpha: expected 'auto' or a number >= 0, got -1.0"),
        ({"alpha": "strong"}, ValueError, "alpha: expected 'auto' or a number >= 0, got 'strong'"),
        (
            {"penalty": "l3"},
            ValueError,
            "penalty: expected one of 'l2', 'l1', 'elasticnet' or None",
        ),
        ({"solver": "newton"}, ValueError, "solver: expected one of"),
        ({"max_iter": 0}, ValueError, "max_iter: expected an int >= 1, got 0"),
        ({"l1_ratio": 2.0}, ValueError, r"l1_ratio: expected a number in \[0, 1\], got 2.0"),
        ({"lr_schedule": "cosine"}, ValueError, "lr_schedule: expected one of"),
        ({"random_state": "seed"}, TypeError, "random_state: expected None, an int"),
        ({"class_weight": {7: 1.0}}, ValueError, "class_weight: expected keys among"),
    ],
)
def test_bad_hyperparameters_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        SoftmaxClassifier(**kwargs).fit([[0.0], [1.0]], [0, 1])


def test_one_class_and_unfitted_errors():
    with pytest.raises(ValueError, match="y: expected at least 2 classes, got 1 class"):
        SoftmaxClassifier().fit([[0.0], [1.0]], [3, 3])
    with pytest.raises(NotFittedError):
        SoftmaxClassifier().predict([[0.0]])
    with pytest.raises(ValueError, match="hidden_layer_sizes: expected a non-empty tuple"):
        MLPClassifier(hidden_layer_sizes=()).fit([[0.0], [1.0]], [0, 1])


def test_optimizers_follow_their_formulas():
    from crossent.models._optim import SGD, Adam, learning_rate_at, soft_threshold

    rng = np.random.default_rng(0)
    theta = rng.normal(size=7)
    ref = theta.copy()
    adam, sgd = Adam(7), SGD(7, momentum=0.9)
    theta_sgd, ref_sgd, v = theta.copy(), theta.copy(), np.zeros(7)
    m, s = np.zeros(7), np.zeros(7)
    for t in range(1, 6):
        g = rng.normal(size=7)
        adam.step(theta, g, 0.01)
        m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
        ref -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
        sgd.step(theta_sgd, g, 0.1)
        v = 0.9 * v - 0.1 * g
        ref_sgd += v
    np.testing.assert_allclose(theta, ref, rtol=1e-12)
    np.testing.assert_allclose(theta_sgd, ref_sgd, rtol=1e-12)
    # proximal heavy ball (iPiano): θₖ₊₁ = prox(θₖ + μ(θₖ − θₖ₋₁) − ηg), prox on entries 0..2
    prox_sgd, theta = SGD(4, momentum=0.9), rng.normal(size=4)
    ref, ref_prev = theta.copy(), theta.copy()
    for _ in range(6):
        g = rng.normal(size=4)
        prox_sgd.step(theta, g, 0.1)
        prox_sgd.shrink(theta, [slice(0, 3)], 0.05)
        z = ref + 0.9 * (ref - ref_prev) - 0.1 * g
        z[:3] = np.sign(z[:3]) * np.maximum(np.abs(z[:3]) - 0.05, 0.0)
        ref_prev, ref = ref, z
    np.testing.assert_allclose(theta, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(prox_sgd.velocity, ref - ref_prev, rtol=1e-12, atol=1e-15)
    w = np.array([0.3, -0.05, 0.0, -1.0])
    soft_threshold(w, 0.1)
    np.testing.assert_allclose(w, [0.2, 0.0, 0.0, -0.9])
    assert learning_rate_at("invscaling", 0.1, 3) == pytest.approx(0.05)
    assert learning_rate_at("constant", 0.1, 3) == 0.1


def test_refit_starts_over_and_early_stopping_needs_a_validation_part(digits):
    X_tr, _, y_tr, _ = digits
    clf = SoftmaxClassifier(solver="sgd", early_stopping=True, n_iter_no_change=2, random_state=0)
    first = len(clf.fit(X_tr, y_tr).validation_scores_)
    assert len(clf.fit(X_tr, y_tr).validation_scores_) == first == clf.n_iter_
    with pytest.raises(ValueError, match=r"validation_fraction: expected a number in \(0, 1\)"):
        clf.set_params(validation_fraction=0.0).fit(X_tr, y_tr)


def test_class_weights_follow_the_documented_weighted_mean(digits):
    X, _, y, _ = digits
    w = np.ones(10)
    w[3] = 4.0
    clf = SoftmaxClassifier(alpha=0.05, class_weight={3: 4.0}, tol=1e-8, max_iter=1000)
    clf.fit(X, y)
    S = X @ clf.coef_.T + clf.intercept_
    J = reference.cross_entropy(S, y, weight=w) + 0.05 * 0.5 * np.sum(clf.coef_**2)
    assert clf.loss_curve_[-1] == pytest.approx(J, rel=1e-10)
    recall_3 = np.mean(clf.predict(X[y == 3]) == 3)
    assert recall_3 == 1.0


def test_one_penalty_definition_and_one_message():
    from crossent._penalties import PENALTIES, PENALTY_KINDS
    from crossent.cli import build_parser

    assert PENALTIES == (*PENALTY_KINDS, None) == ("l2", "l1", "elasticnet", None)
    messages = []
    for call in (
        lambda: crossent.penalty([1.0], "l3"),
        lambda: crossent.regularized_objective(
            np.zeros((2, 1)), np.zeros(2), [[1.0]], [0], penalty="l3"
        ),
        lambda: SoftmaxClassifier(penalty="l3").fit([[0.0], [1.0]], [0, 1]),
        lambda: MLPClassifier(penalty="l3").fit([[0.0], [1.0]], [0, 1]),
    ):
        with pytest.raises(ValueError, match=r"^penalty: ") as info:
            call()
        messages.append(str(info.value))
    assert set(messages) == {"penalty: expected one of 'l2', 'l1', 'elasticnet' or None, got 'l3'"}
    with pytest.raises(
        ValueError, match=r"^penalty: expected one of 'l2', 'l1' or 'elasticnet', got 'l3'$"
    ):
        explain([1.0, 2.0], 0, penalty="l3", params=[1.0])
    train_penalty = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
        if a.dest == "penalty"
    )
    assert train_penalty.choices == (*PENALTY_KINDS, "none")


def test_split_pipeline_finds_the_classifier():
    X, y = make_blobs(n_samples=30, centers=3, random_state=0)
    clf = SoftmaxClassifier().fit(X, y)
    assert split_pipeline(clf) == (None, clf)
    pipe = make_pipeline(StandardScaler(), SoftmaxClassifier()).fit(X, y)
    assert split_pipeline(pipe) == (pipe[0], pipe[1])
    assert split_pipeline(make_pipeline("passthrough", clf)) == (None, clf)
    with pytest.raises(TypeError, match=r"model: expected a crossent classifier or Pipeline\(Sta"):
        split_pipeline(make_pipeline(StandardScaler(), StandardScaler(), clf))


@pytest.mark.parametrize(
    ("value", "error"), [("0.1", TypeError), (True, TypeError), (1.5, ValueError)]
)
def test_the_estimators_and_the_core_raise_the_same_error_type(value, error):
    """label_smoothing of the wrong type is a TypeError, out of range a ValueError, in both."""
    import crossent

    with pytest.raises(error, match="label_smoothing: expected"):
        crossent.cross_entropy([[1.0, 2.0]], [0], label_smoothing=value)
    with pytest.raises(error, match="label_smoothing: expected"):
        SoftmaxClassifier(label_smoothing=value).fit([[0.0], [1.0]], [0, 1])
