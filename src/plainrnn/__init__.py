"""plainrnn: plain ReLU RNNs and MLPs trained with geometry-aware optimizers.

    import plainrnn as pr
    model = pr.ReLURNN(2, 100, 1)
    opt = pr.optim.PathSGD(model, lr=1e-3, seq_len=100)
"""
from . import nets, optim, path, stiefel, tasks
from .nets import LSTM, MLP, ReLURNN, SpectralRNN

__version__ = "0.1.0"
__all__ = ["ReLURNN", "SpectralRNN", "MLP", "LSTM", "nets", "path", "optim", "stiefel", "tasks", "__version__"]
