"""Recurrent and feedforward models: ReLURNN, SpectralRNN, MLP, and the LSTM baseline."""
from .base import RecurrentModel
from .init import RECURRENT_INITS, init_recurrent_, init_rnn_, recurrent_matrix
from .lstm import LSTM
from .mlp import MLP
from .relu_rnn import ReLURNN
from .spectral_rnn import SpectralRNN

__all__ = ["RecurrentModel", "ReLURNN", "SpectralRNN", "LSTM", "MLP", "RECURRENT_INITS", "init_recurrent_", "init_rnn_", "recurrent_matrix"]
