"""nnlab.nn.Stack against Sequential.fit: every member's history, weights and get_state() equal
training it alone (history within 1e-5 relative, both runs made here, in this environment).

Every comparison trains the same freshly built members twice, once alone and once stacked, with
moderate rates and few epochs, so the runs are not chaotic; stopping epochs are forced (huge
min_delta, a reference loss no run can stay under, a callback that prunes at a set epoch)
instead of depending on the trajectory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab import nn

RTOL = 1e-5


def moons(n=150, noise=0.2, seed=0):
    """Two noisy moons (n, 2) float64 with 0/1 labels; n=150 at batch 16 ends in a partial batch."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper[:, None], np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return x + noise * rng.normal(size=x.shape), (~upper).astype(float)


X, Y = moons()
XV, YV = moons(n=45, seed=1)


def blobs(n=130, k=3, dim=4, seed=0):
    """k Gaussian classes in ``dim`` dimensions: x (n, dim), class ids (n,)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, k, n)
    centers = rng.normal(size=(k, dim)) * 2
    return centers[ids] + rng.normal(size=(n, dim)), ids


def mlp(
    seed,
    optimizer,
    *,
    hidden=(8, 8),
    activation="relu",
    inputs=2,
    out=(1, "sigmoid"),
    loss="binary_crossentropy",
    metrics=("accuracy",),
    dtype="float32",
):
    layers = [nn.Dense(hidden[0], activation, input_dim=inputs)]
    layers += [nn.Dense(h, activation) for h in hidden[1:]]
    layers.append(nn.Dense(out[0], out[1]))
    model = nn.Sequential(layers, seed=seed, dtype=dtype)
    model.compile(optimizer, loss, list(metrics))
    return model


def fit_both(make, count, x=X, y=Y, per_member=None, callbacks=None, **fit_kw):
    """Train ``count`` members ``make(i)`` alone and in a stack with the same arguments.

    ``per_member(i)``: that member's own fit arguments (epochs, initial_epoch); ``callbacks(i)``:
    a fresh callback list for member i (called once per run). Returns (alone, stacked), each a
    list of (model, history).
    """
    per_member = per_member or (lambda i: {})
    callbacks = callbacks or (lambda i: [])
    alone = []
    for i in range(count):
        model = make(i)
        kw = {"epochs": 3, **fit_kw, **per_member(i)}
        alone.append((model, model.fit(x, y, callbacks=callbacks(i), **kw)))
    models = [make(i) for i in range(count)]
    own = {key: [per_member(i)[key] for i in range(count)] for key in per_member(0)}
    kw = {"epochs": 3, **fit_kw, **own}
    histories = nn.Stack(models).fit(x, y, callbacks=[callbacks(i) for i in range(count)], **kw)
    return alone, list(zip(models, histories, strict=True))


def assert_same_history(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert len(a[key]) == len(b[key]), key
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=1e-12, err_msg=key)


def assert_same_state(a: dict, b: dict, rtol=RTOL) -> None:
    """Equal ``get_state()`` dicts: arrays of numbers within rtol, everything else exactly."""
    assert sorted(a) == sorted(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=rtol, atol=1e-7, err_msg=key)
        else:
            assert np.array_equal(x, y), key


def assert_members_equal(alone, stacked) -> None:
    for i, ((ma, ha), (ms, hs)) in enumerate(zip(alone, stacked, strict=True)):
        assert ha.epoch == hs.epoch, f"member {i}"
        assert_same_history(ha.history, hs.history)
        assert_same_state(ma.get_state(), ms.get_state())
        assert ms.history is hs


LRS = [1e-3, 3e-3, 1e-2, 3e-2]


# --- each optimizer, dtype, loss family ----------------------------------------------------

OPTIMIZERS = {
    "adam": lambda lr: nn.Adam(lr),
    "adam_betas": lambda lr: nn.Adam(lr, beta_1=0.8, beta_2=0.99, epsilon=1e-5),
    "sgd": lambda lr: nn.SGD(lr * 10),
    "sgd_momentum": lambda lr: nn.SGD(lr * 3, momentum=0.9),
    "sgd_nesterov": lambda lr: nn.SGD(lr * 3, momentum=0.8, nesterov=True),
    "rmsprop": lambda lr: nn.RMSprop(lr),
    "rmsprop_centered_momentum": lambda lr: nn.RMSprop(lr, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_equals_training_alone(name, dtype):
    def make(i):
        return mlp(i, OPTIMIZERS[name](LRS[i]), dtype=dtype)

    alone, stacked = fit_both(make, 4, batch_size=16, validation_data=(XV, YV))
    assert_members_equal(alone, stacked)
    # different seeds and rates really gave different members (a stack of clones proves little)
    losses = {round(h.history["loss"][-1], 6) for _, h in stacked}
    assert len(losses) == 4


XB, IDS = blobs()
ONE_HOT = np.eye(3)[IDS]
TARGETS = np.c_[XB[:, :1] - XB[:, 1:2], XB[:, 2:3] * 0.5]

LOSS_CASES = {  # name: (output layer, loss, metrics, x, y)
    "binary": ((1, "sigmoid"), "binary_crossentropy", ["accuracy"], X, Y),
    "binary_logits": ((1, "linear"), nn.BinaryCrossentropy(from_logits=True), ["accuracy"], X, Y),
    "categorical": ((3, "softmax"), "categorical_crossentropy", ["accuracy"], XB, ONE_HOT),
    "categorical_logits": (
        (3, "linear"),
        nn.CategoricalCrossentropy(from_logits=True),
        ["accuracy"],
        XB,
        ONE_HOT,
    ),
    "sparse": ((3, "softmax"), "sparse_categorical_crossentropy", ["accuracy"], XB, IDS),
    "mse": ((2, "linear"), "mse", ["mae", "mse"], XB, TARGETS),
    "binary_multi_unit": (
        (2, "sigmoid"),
        "binary_crossentropy",
        ["accuracy"],
        XB,
        np.c_[IDS == 0, IDS == 1].astype(float),
    ),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_each_loss_family_equals_training_alone(case, dtype):
    out, loss, metrics, x, y = LOSS_CASES[case]
    split = len(x) * 3 // 4

    def make(i, activation="tanh"):
        return mlp(
            i,
            nn.Adam(LRS[i]),
            inputs=x.shape[1],
            out=out,
            loss=loss,
            metrics=metrics,
            dtype=dtype,
            activation=activation,
        )

    valid = (x[split:], y[split:])
    alone, stacked = fit_both(make, 3, x[:split], y[:split], batch_size=16, validation_data=valid)
    assert_members_equal(alone, stacked)
    with pytest.raises(ValueError, match="differs from member 0 in its layers"):
        nn.Stack([make(0), make(1, activation="relu")])


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "elu", "softplus", "leaky_relu"])
def test_each_hidden_activation_equals_training_alone(activation):
    def make(i):
        return mlp(i, nn.Adam(LRS[i]), activation=activation, hidden=(6,), dtype="float64")

    assert_members_equal(*fit_both(make, 2, batch_size=32))


# --- batches, validation, shuffling --------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 7, 16, 149, 150, 500])
def test_batch_sizes_and_partial_last_batch(batch_size):
    """150 samples: batch 7 leaves 3, 16 leaves 6, 149 leaves 1; 500 is one partial batch."""

    def make(i):
        return mlp(i, nn.SGD(LRS[i] * 5, momentum=0.5))

    alone, stacked = fit_both(make, 3, batch_size=batch_size, epochs=2)
    assert_members_equal(alone, stacked)


def test_validation_split_and_no_shuffle():
    def make(i):
        return mlp(i, nn.RMSprop(LRS[i]))

    assert_members_equal(*fit_both(make, 3, batch_size=16, validation_split=0.2))
    assert_members_equal(*fit_both(make, 3, batch_size=16, shuffle=False, validation_data=(XV, YV)))


def test_each_member_shuffles_with_its_own_generator():
    """Same seed and rate but one member's generator advanced: only that member's run moves,
    as it would alone (the stack draws each member's permutation from that member)."""

    def make(i):
        model = mlp(0, nn.Adam(1e-2))
        model.build(2)
        if i == 1:
            model._rng.permutation(10)
        return model

    alone, stacked = fit_both(make, 2, batch_size=16)
    assert_members_equal(alone, stacked)
    assert stacked[0][1].history["loss"] != stacked[1][1].history["loss"]


# --- learning rates: schedules and callbacks ------------------------------------------------


def test_schedules_and_rate_callbacks_per_member():
    schedules = nn.schedules

    def make(i):
        rate = [
            schedules.ExponentialDecay(1e-2, decay_steps=5, decay_rate=0.7),
            schedules.CosineDecay(2e-2, decay_steps=30, warmup_target=3e-2, warmup_steps=8),
            schedules.PiecewiseConstantDecay([10, 25], [3e-2, 1e-2, 3e-3]),
            1e-2,
            3e-3,
        ][i]
        return mlp(i, nn.Adam(rate))

    def callbacks(i):
        if i == 3:  # reduces every epoch: nothing improves by 10
            return [nn.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=10.0)]
        if i == 4:
            return [nn.LearningRateScheduler(lambda epoch, lr: lr * (1.5 if epoch % 2 else 0.5))]
        return []

    alone, stacked = fit_both(make, 5, callbacks=callbacks, batch_size=16, epochs=4)
    assert_members_equal(alone, stacked)
    rates = stacked[3][1].history["learning_rate"]  # the first epoch sets the best
    np.testing.assert_allclose(rates, [1e-2, 1e-2, 5e-3, 2.5e-3], rtol=1e-6)


class RateAtStep(nn.Callback):
    """Sets the learning rate after a given update (mid-epoch) and records every batch loss."""

    def __init__(self, step, rate):
        super().__init__()
        self.step, self.rate, self.seen = step, rate, []

    def on_train_batch_end(self, step, logs=None):
        self.seen.append((step, logs["loss"], self.model.optimizer.iterations))
        if step == self.step:
            self.model.optimizer.learning_rate = self.rate


def test_batch_callbacks_see_their_member_and_may_set_its_rate_mid_epoch():
    hooks: dict[str, list[RateAtStep]] = {"alone": [], "stacked": []}

    def make(i):
        return mlp(i, nn.Adam(LRS[i]))

    def callbacks_for(run):
        def callbacks(i):
            if i == 1:
                return []
            hooks[run].append(RateAtStep(step=5 + 3 * i, rate=0.05))
            return [hooks[run][-1]]

        return callbacks

    a = fit_both(make, 3, callbacks=callbacks_for("alone"), batch_size=16)[0]
    s = fit_both(make, 3, callbacks=callbacks_for("stacked"), batch_size=16)[1]
    assert_members_equal(a, s)
    # fit_both made each member's callbacks twice, once per run: the alone run's come first
    for alone_cb, stacked_cb in zip(hooks["alone"][:2], hooks["stacked"][2:], strict=True):
        steps_a, losses_a, iters_a = zip(*alone_cb.seen, strict=True)
        steps_s, losses_s, iters_s = zip(*stacked_cb.seen, strict=True)
        assert steps_a == steps_s == iters_s == tuple(range(1, 3 * 10 + 1))
        np.testing.assert_allclose(losses_s, losses_a, rtol=RTOL)


# --- members stop independently ------------------------------------------------------------


class PruneAt(nn.Callback):
    """Sets stop_training at the end of a given epoch, as a sweep's pruner would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


def test_members_stop_at_their_own_epochs_and_stop_updating():
    """Early stopping (patience 1 and 3, one restoring its best weights), a divergence guard
    whose reference no loss stays under, a pruning callback, and budgets of 1 to 7 epochs."""

    def callbacks(i):
        return [
            [nn.EarlyStopping("val_loss", patience=1, min_delta=10.0)],  # stops at epoch 1
            [nn.EarlyStopping("loss", patience=3, min_delta=10.0, restore_best_weights=True)],
            [nn.DivergenceGuard(factor=1.0, reference=1e-3)],  # diverged at epoch 0
            [PruneAt(2)],
            [],
            [nn.ReduceLROnPlateau("val_loss", patience=1, min_delta=10.0, factor=0.5)],
        ][i]

    budgets = [7, 7, 7, 7, 1, 5]

    def make(i):
        return mlp(i, nn.Adam(LRS[i % 4] * 2))

    alone, stacked = fit_both(
        make,
        6,
        per_member=lambda i: {"epochs": budgets[i]},
        callbacks=callbacks,
        batch_size=16,
        validation_data=(XV, YV),
    )
    assert_members_equal(alone, stacked)
    assert [len(h.epoch) for _, h in stacked] == [2, 4, 1, 3, 1, 5]
    # the restored best weights are the first epoch's, not the last one's
    early = stacked[1][0]
    assert early.get_weights()[0].tolist() == alone[1][0].get_weights()[0].tolist()


def test_initial_epochs_and_budgets_per_member():
    def make(i):
        return mlp(i, nn.SGD(LRS[i] * 10, momentum=0.5))

    own = [
        {"initial_epoch": 0, "epochs": 3},
        {"initial_epoch": 2, "epochs": 6},
        {"initial_epoch": 4, "epochs": 4},
        {"initial_epoch": 1, "epochs": 2},
    ]
    alone, stacked = fit_both(make, 4, per_member=lambda i: own[i], batch_size=32)
    assert_members_equal(alone, stacked)
    assert [h.epoch for _, h in stacked] == [[0, 1, 2], [2, 3, 4, 5], [], [1]]
    assert stacked[2][0].optimizer.iterations == 0


# --- resume --------------------------------------------------------------------------------


def test_state_from_a_stack_resumes_in_a_plain_model_and_back():
    """Members stop after 2 epochs in a stack; their states resume in plain models (and those
    in a new stack at different epochs): the same numbers as 5 uninterrupted epochs alone."""

    def make(i):
        rate = nn.schedules.ExponentialDecay(2e-2, 7, 0.8) if i == 2 else LRS[i]
        return mlp(i, nn.Adam(rate))

    def plateau(i):  # not with member 2's schedule
        return [nn.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=10.0)][: i < 2]

    kw = {"batch_size": 16, "validation_data": (XV, YV)}
    whole = []
    for i in range(3):
        model = make(i)
        whole.append((model, model.fit(X, Y, epochs=5, callbacks=plateau(i), **kw)))

    first = [make(i) for i in range(3)]
    stopped = [1, 2, 3]  # epochs each member trains in the first stack
    h1 = nn.Stack(first).fit(X, Y, epochs=stopped, callbacks=[plateau(i) for i in range(3)], **kw)
    states = [m.get_state() for m in first]

    # member 0 resumes alone; members 1 and 2 in a second stack, from different epochs
    plain = make(0)
    plain.set_state(states[0])
    h0 = plain.fit(X, Y, epochs=5, initial_epoch=stopped[0], callbacks=plateau(0), **kw)
    rest = [make(1), make(2)]
    for model, state in zip(rest, states[1:], strict=True):
        model.set_state(state)
    h2 = nn.Stack(rest).fit(
        X, Y, epochs=5, initial_epoch=stopped[1:], callbacks=[plateau(1), plateau(2)], **kw
    )

    for i, (model, tail) in enumerate(zip([plain, *rest], [h0, *h2], strict=True)):
        joined = {k: h1[i].history[k] + tail.history[k] for k in tail.history}
        assert_same_history(whole[i][1].history, joined)
        assert_same_state(whole[i][0].get_state(), model.get_state())


# --- members keep their own arrays; errors ---------------------------------------------------


class RaiseAt(nn.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_members_keep_their_arrays_and_hold_their_state_after_an_interrupt():
    def make(i):
        return mlp(i, nn.Adam(LRS[i]))

    models = [make(i) for i in range(3)]
    kernels = [m.layers[0].kernel for m in models]
    slots = [m.optimizer for m in models]
    with pytest.raises(KeyboardInterrupt):
        nn.Stack(models).fit(X, Y, batch_size=16, epochs=4, callbacks=[[], [RaiseAt(1)], []])
    alone = [make(i) for i in range(3)]
    for model in alone:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, Y, batch_size=16, epochs=4, callbacks=[RaiseAt(1)])
    for i, (model, ref) in enumerate(zip(models, alone, strict=True)):
        # back in its own arrays: what was read before the fit sees the weights after it
        assert np.shares_memory(model.layers[0].kernel, kernels[i])
        np.testing.assert_array_equal(kernels[i], model.layers[0].kernel)
        assert model.optimizer is slots[i]
        # members 0 and 1 ended their epoch 1 (member 1's callback raised after it); member 2
        # had not heard of its epoch 1 yet, but trained it: all as alone after 2 epochs
        assert_same_state(ref.get_state(), model.get_state())
    # and they train on alone afterwards, as models that never were in a stack
    models[0].fit(X, Y, batch_size=16, epochs=1)
    alone[0].fit(X, Y, batch_size=16, epochs=1)
    assert_same_state(alone[0].get_state(), models[0].get_state())


def test_incompatible_members_and_bad_arguments_are_one_line_errors():
    def make(i=0, **kw):
        return mlp(i, kw.pop("optimizer", nn.Adam(1e-3)), **kw)

    cases = [
        (lambda: nn.Stack([]), ValueError, "at least one model"),
        (lambda: nn.Stack([make(), make(dtype="float64")]), ValueError, "in its dtype"),
        (lambda: nn.Stack([make(), make(hidden=(8, 4))]), ValueError, "in its layers"),
        (lambda: nn.Stack([make(), make(optimizer=nn.SGD())]), ValueError, "in its optimizer"),
        (
            lambda: nn.Stack([make(), make(optimizer=nn.Adam(1e-3, beta_1=0.8))]),
            ValueError,
            "in its optimizer",
        ),
        (lambda: nn.Stack([make(), make(metrics=())]), ValueError, "in its metrics"),
        (lambda: nn.Stack([make(), make(loss="mse")]), ValueError, "in its loss"),
        (lambda: nn.Stack([make(), "model"]), TypeError, "not a Sequential"),
    ]
    shared = make()
    cases.append((lambda: nn.Stack([shared, shared]), ValueError, "appears twice"))
    other = make(1)
    other.optimizer = shared.optimizer
    cases.append((lambda: nn.Stack([shared, other]), ValueError, "share an optimizer"))
    uncompiled = nn.Sequential([nn.Dense(1, input_dim=2)])
    cases.append((lambda: nn.Stack([make(), uncompiled]), ValueError, "not compiled"))
    stack = nn.Stack([make(0), make(1)])
    fit_cases = [
        ({"callbacks": [nn.EarlyStopping()]}, TypeError, "one list of callbacks per member"),
        ({"callbacks": [[]]}, ValueError, "1 lists for 2 stack members"),
        ({"epochs": [1, 2, 3]}, ValueError, "3 values for 2 stack members"),
        ({"initial_epoch": [0, -1]}, ValueError, "initial_epoch must be >= 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ]
    es = nn.EarlyStopping()
    fit_cases.append(({"callbacks": [[es], [es]]}, ValueError, "given twice"))
    for call, error, message in cases:
        with pytest.raises(error, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    for kw, error, message in fit_cases:
        with pytest.raises(error, match=message) as info:
            stack.fit(X, Y, **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="x has 3 features but the model expects input_dim=2"):
        stack.fit(np.ones((4, 3)), np.ones(4))


def test_unbuilt_members_are_built_from_the_data_as_alone():
    def make(i):
        layers = [nn.Dense(8, "relu"), nn.Dense(1, "sigmoid")]
        model = nn.Sequential(layers, seed=i)
        model.compile(nn.Adam(LRS[i]), "binary_crossentropy", ["accuracy"])
        return model

    assert_members_equal(*fit_both(make, 2, batch_size=16))


def test_a_stack_of_one_and_zero_epochs():
    def make(i):
        return mlp(i, nn.Adam(1e-2))

    assert_members_equal(*fit_both(make, 1, batch_size=16))
    stacked = fit_both(make, 2, per_member=lambda i: {"epochs": 0}, batch_size=16)[1]
    assert all(h.epoch == [] and h.history["loss"] == [] for _, h in stacked)
    assert not math.isnan(stacked[0][0].evaluate(X, Y)["loss"])


# --- the crossover rule (trainer.stack=auto) ---------------------------------------------------


def test_stacking_pays_where_the_measured_table_says_and_rounds_towards_the_slower_cell():
    from nnlab.nn import stacked

    widths, batches = stacked.CROSSOVER_WIDTHS, stacked.CROSSOVER_BATCHES
    for k, table in stacked.CROSSOVER.items():
        for (i, w), (j, b) in ((iw, jb) for iw in enumerate(widths) for jb in enumerate(batches)):
            assert stacked.measured_ratio([w, w, 1], b, 2, k) == table[i][j]
            assert nn.stacking_pays([w, w, 1], b, 2, k) == (table[i][j] >= stacked.PAYS_AT)
    ratio = stacked.measured_ratio
    row, col = widths.index(32), batches.index(32)
    # between measured points: the next wider net, the next larger batch, the worse stack size
    assert ratio([20, 20, 1], 16, 2, 64) == ratio([32, 32, 1], 16, 2, 64)
    assert ratio([16, 16, 1], 20, 2, 64) == ratio([16, 16, 1], 32, 2, 64)
    between = (stacked.CROSSOVER[16][row][col], stacked.CROSSOVER[64][row][col])
    assert ratio([32, 32, 1], 32, 2, 40) == min(between)
    # more inputs or layers count as more multiply-adds: a wider measured net
    assert ratio([16, 16, 1], 16, 16, 64) == ratio([32, 32, 1], 16, 2, 64)  # 528 > 304 MACs
    assert ratio([16, 16, 1], 16, 64, 64) == ratio([64, 64, 1], 16, 2, 64)  # 1296 > 1120
    assert ratio([16, 16, 16, 16, 1], 16, 2, 64) == ratio([32, 32, 1], 16, 2, 64)
    # beyond the table nothing stacks
    assert ratio([129, 129, 1], 16, 2, 64) is None and not nn.stacking_pays([256, 1], 16, 2, 64)
    assert ratio([16, 16, 1], 257, 2, 64) is None
    assert not nn.stacking_pays([16, 16, 1], 16, 2, 1)
    assert ratio([16, 16, 1], 16, 2, 500) == ratio([16, 16, 1], 16, 2, 64)
    # the flagship sweep's trial stacks
    assert nn.stacking_pays([16, 16, 1], 16, 2, 64)


def test_stack_size_picks_the_best_measured_size_that_pays():
    from nnlab.nn import stacked

    for w, b, n in ((16, 16, 252), (64, 128, 252), (128, 256, 252), (16, 16, 40), (16, 16, 3)):
        size = nn.stack_size([w, w, 1], b, 2, n)
        candidates = [s for s in (*stacked.CROSSOVER, n) if s <= n and s <= 64]
        ratios = {s: stacked.measured_ratio([w, w, 1], b, 2, s) for s in candidates}
        paying = {s: r for s, r in ratios.items() if r is not None and r >= stacked.PAYS_AT}
        if not paying:
            assert size == 1
            continue
        assert size <= n and ratios[size] == max(paying.values())
        assert size == max(s for s, r in paying.items() if r == ratios[size])
    assert nn.stack_size([16, 16, 1], 16, 2, 1) == 1
