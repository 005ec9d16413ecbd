"""A training loop that keeps the best 2 checkpoints by validation loss.

    python examples/train_best2.py run.sp                  # train 12 epochs
    python examples/train_best2.py run.sp --restore-best   # roll back to the best

Linear regression by minibatch SGD with momentum, in numpy.  After each
epoch the weights, the optimizer's momentum, the RNG state and the epoch go
into the store as one transaction (``save_state``), then a snapshot named
after the epoch records ``val_loss``.  ``Retention(keep_best=2, ...)`` deletes
every snapshot that is not among the two best (the newest is always kept,
so a run can resume from it).  Unlike a checkpoint file overwritten in
place, a crash at any moment leaves the old snapshots intact.

Run it again and it resumes after the last epoch it saved.
"""

from __future__ import annotations

import argparse

import numpy as np

import safepoint
from safepoint.workflows import load_state, save_state

FEATURES = 8
EPOCHS = 12


def data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    true_w = np.linspace(-1.0, 1.0, FEATURES)
    x = rng.standard_normal((n, FEATURES))
    return x, x @ true_w + 0.5 + 0.3 * rng.standard_normal(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--restore-best", action="store_true")
    args = parser.parse_args()

    retention = safepoint.Retention(keep_best=2, metric="val_loss", mode="min")
    with safepoint.open(args.store, retention=retention, segment_bytes=1 << 20) as db:
        if args.restore_best:
            best = min(db.snapshots(), key=lambda s: s.metrics["val_loss"])
            db.restore(best.name)
            state = load_state(db, "model")
            assert state is not None
            print(
                f"restored {best.name}: epoch {state.step}, val_loss {best.metrics['val_loss']:.6f}"
            )
            return

        x_val, y_val = data(np.random.default_rng(1), 256)
        x_train, y_train = data(np.random.default_rng(2), 1024)
        rng = np.random.default_rng(3)  # shuffling; its state is saved each epoch
        w, b = np.zeros(FEATURES), np.zeros(())
        velocity = {"w": np.zeros(FEATURES), "b": np.zeros(())}
        lr, momentum, start = 0.02, 0.9, 0
        saved = load_state(db, "model", rng=rng)
        if saved is not None:
            w, b = saved.state_dict["w"], saved.state_dict["b"]
            velocity, lr = saved.optimizer["velocity"], saved.optimizer["lr"]
            start = saved.step + 1
            print(f"resuming after epoch {saved.step}")

        for epoch in range(start, args.epochs):
            order = rng.permutation(len(x_train))
            for batch in np.array_split(order, 32):
                err = x_train[batch] @ w + b - y_train[batch]
                velocity["w"] = momentum * velocity["w"] - lr * (x_train[batch].T @ err) / len(
                    batch
                )
                velocity["b"] = momentum * velocity["b"] - lr * err.mean()
                w, b = w + velocity["w"], b + velocity["b"]
            # The rate jumps every third epoch, so the best epochs are not simply the last.
            lr *= 0.8 if epoch % 3 else 2.5
            val_loss = float(np.mean((x_val @ w + b - y_val) ** 2))
            save_state(
                db,
                "model",
                state_dict={"w": w, "b": b},
                optimizer={"velocity": velocity, "lr": lr, "momentum": momentum},
                rng=rng,
                step=epoch,
            )
            db.save(f"epoch-{epoch:03d}", step=epoch, metrics={"val_loss": val_loss})
            print(f"epoch {epoch} val_loss {val_loss:.6f}")

        kept = ", ".join(f"{s.name} ({s.metrics['val_loss']:.6f})" for s in db.snapshots())
        print(f"kept: {kept}")


if __name__ == "__main__":
    main()
