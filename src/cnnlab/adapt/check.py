"""The proof that an adapted network trains: one SGD step (the only part of adapt that needs torch)."""

from __future__ import annotations

from ..layers import Shape
from ..network import Network


def train_step(net: Network, shape: Shape | None = None, *, batch: int = 2, seed: int = 0) -> tuple[float, float]:
    """Build ``net`` for training and take one SGD step on random data at ``shape`` (default: its
    input): the proof that an adapted network trains. Returns (loss, total absolute weight change)."""
    import torch
    import torch.nn.functional as F

    from ..torch_backend import build

    torch.manual_seed(seed)
    shape = tuple(shape or net.input_shape)
    model = build(net, shape, logits=True).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out = model(torch.randn(batch, *shape))
    outs = out if isinstance(out, tuple) else (out,)
    loss = torch.zeros(())
    for i, y in enumerate(outs):
        if y.shape[1] == 1:
            part = F.binary_cross_entropy_with_logits(y[:, 0], torch.randint(0, 2, (batch,)).float())
        else:
            part = F.cross_entropy(y, torch.randint(0, y.shape[1], (batch,)))
        loss = loss + (part if i == 0 else 0.3 * part)
    opt.zero_grad()
    loss.backward()
    opt.step()
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(model.parameters(), before))
    return float(loss.detach()), moved
