"""The network: a recurrent cell (tanh RNN, LSTM or GRU), stacked, with a linear head."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

CELLS = ("rnn", "lstm", "gru")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    n_in: int
    n_out: int
    cell: str = "lstm"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SeqModel(nn.Module):
    """Maps inputs [batch, steps, n_in] to outputs [batch, steps, n_out], carrying a state.

    The state is what the cell carries between steps: h for rnn and gru, (h, c) for lstm.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        kinds = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
        extra = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        self.rnn = kinds[config.cell](
            config.n_in,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.head = nn.Linear(config.hidden, config.n_out)
        if config.cell == "lstm":
            set_forget_bias(self.rnn, 1.0)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(x, state)
        return self.head(out), state


def set_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Forget-gate bias `value` (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default).

    PyTorch starts it at about 0, so the memory halves at every step at initialisation.
    The gates are stacked (input, forget, cell, output); the bias is b_ih + b_hh.
    """
    hidden = lstm.hidden_size
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_ih"):
                bias[hidden : 2 * hidden] = value
            elif name.startswith("bias_hh"):
                bias[hidden : 2 * hidden] = 0.0


def masked_mse(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean squared error over the steps that have a target (NaN in `y`: none), and their count."""
    if mask is None:
        mask = ~torch.isnan(y)
    count = mask.sum()
    err = torch.where(mask, out - torch.nan_to_num(y), 0.0)
    return err.pow(2).sum() / count.clamp(min=1), count


def detach(state):
    """Cut the gradient at a chunk boundary but keep the values (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class Stepper:
    """The model one step at a time: torch's cell functions over the model's own weights.

    For free-running generation, where each step waits for the one before: without the
    module machinery a step costs a fraction of a one-step call of the fused module.
    """

    def __init__(self, model: SeqModel):
        cfg = model.config
        self.lstm = cfg.cell == "lstm"
        self.cell = {"rnn": torch.rnn_tanh_cell, "lstm": torch.lstm_cell, "gru": torch.gru_cell}[cfg.cell]
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        self.weights = [tuple(getattr(model.rnn, f"{n}_l{i}") for n in names) for i in range(cfg.layers)]
        self.head = model.head.weight, model.head.bias

    def split(self, state) -> list:
        """The module's state ([layers, B, H] tensors) as one state per layer."""
        if self.lstm:
            h, c = state
            return [(h[i], c[i]) for i in range(len(self.weights))]
        return [state[i] for i in range(len(self.weights))]

    def __call__(self, x: torch.Tensor, states: list):
        """x [B, n_in] -> output [B, n_out] and the new per-layer states."""
        new = []
        for weights, state in zip(self.weights, states):
            state = self.cell(x, state, *weights)
            x = state[0] if self.lstm else state
            new.append(state)
        return nn.functional.linear(x, *self.head), new
