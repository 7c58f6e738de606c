"""Text that ``Sequential`` prints: ``summary()``'s table and ``fit(verbose=1)``'s epoch line."""

from __future__ import annotations

from typing import Any


def summary_text(model: Any) -> str:
    """A Keras-style table of ``model``'s layers, output shapes and parameter counts."""
    dims = [model.input_dim] + [layer.units for layer in model.layers]
    rows = []
    for i, layer in enumerate(model.layers):
        count = "?" if dims[i] is None else f"{(dims[i] + 1) * layer.units:,}"
        rows.append((f"{layer.name} (Dense)", f"(None, {layer.units})", count))
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[j]) for r in [header, *rows]) + 2 for j in range(3)]
    widths = [max(widths[0], 30), max(widths[1], 22), max(widths[2], 12)]

    def line(left, mid, right, fill="━"):
        return left + mid.join(fill * w for w in widths) + right

    def row(cells, sep="│"):
        a, b, c = cells
        return (
            f"{sep} {a:<{widths[0] - 2}} {sep} {b:<{widths[1] - 2}} {sep} "
            f"{c:>{widths[2] - 2}} {sep}"
        )

    out = [f'Model: "{model.name}"', line("┏", "┳", "┓"), row(header, "┃"), line("┡", "╇", "┩")]
    for k, r in enumerate(rows):
        out.append(row(r))
        out.append(line("├", "┼", "┤", "─") if k < len(rows) - 1 else line("└", "┴", "┘", "─"))
    if not rows:
        out.append(line("└", "┴", "┘", "─"))
    if model.built:
        total = model._params.size
        size = _readable_bytes(total * model.dtype.itemsize)
        out += [
            f" Total params: {total:,} ({size})",
            f" Trainable params: {total:,} ({size})",
            " Non-trainable params: 0 (0.00 B)",
        ]
    else:
        out.append(" Total params: unknown until the input width is known (unbuilt)")
    return "\n".join(out)


def _readable_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"  # pragma: no cover


def epoch_line(epoch: int, epochs: int, seconds: float, logs: dict[str, float]) -> str:
    values = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
    took = f"{seconds * 1e3:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"
    return f"Epoch {epoch + 1}/{epochs} - {took} - {values}"
