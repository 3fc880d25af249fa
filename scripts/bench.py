"""Time one training step of nn.LSTM, nn.RNN(tanh) and our backends side by side.

    python scripts/bench.py --device cpu|cuda [--quick] [--json PATH] [--markdown PATH]
"""

from arnn.bench import main

if __name__ == "__main__":
    main()
