"""The BiLSTM CTC head: our dense two-direction form against a packed ``nn.LSTM(bidirectional=True)``.

Both compute the same function (``tests/test_downstream.py`` checks it with shared weights); the packed form
is what most code writes, and on CPU it leaves the fused LSTM kernel for a per-step loop. One forward and
backward of a batch shaped like the few-label recipe's (40 s of audio at 50 frames a second).

    python benchmarks/bench_bilstm.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from audiossl.downstream.heads import BiLSTMHead


class PackedBiLSTM(torch.nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(dim, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.proj = torch.nn.Linear(2 * hidden, classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=features.shape[1])
        return self.proj(hidden)


def seconds_per_step(head: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor, steps: int) -> float:
    head(features, lengths).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        head(features, lengths).sum().backward()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--frames", type=int, default=350)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    features = torch.randn(args.batch, args.frames, args.dim)
    lengths = torch.linspace(args.frames * 0.6, args.frames, args.batch).long()
    ours = seconds_per_step(BiLSTMHead(args.dim, 30, args.hidden, 2, 0.0), features, lengths, args.steps)
    packed = seconds_per_step(PackedBiLSTM(args.dim, 30, args.hidden, 2), features, lengths, args.steps)
    frames = int(lengths.sum())
    print(f"{args.batch} x {args.frames} frames (dim {args.dim}, hidden {args.hidden}, 2 layers), "
          f"{args.threads} threads, forward + backward:")
    print(f"  ours (dense, two directions)   {ours * 1000:8.1f} ms  {frames / ours:9.0f} frames/s")
    print(f"  packed nn.LSTM(bidirectional)  {packed * 1000:8.1f} ms  {frames / packed:9.0f} frames/s")
    print(f"  ours {packed / ours:.2f}x faster")


if __name__ == "__main__":
    main()
