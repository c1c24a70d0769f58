"""Language-model tasks: PTB character and word level, PTB sentences, text8, Shakespeare.

Corpora are held as one compact tensor of token ids per split (uint8 for characters, int16 for
words) and batches are cut from it on demand, so nothing larger than a batch is ever one-hot or float.

    ptb-char        PTB-c, Mikolov's split and symbols (characters, "_" between words, "<unk>", end of
                    line), windows of 50 (2016 paper), bits per character
    ptb-word        10k words + <eos>, BPTT 20, perplexity
    ptb-sentences   the 2017 paper's sentence-level character prediction: each PTB-c line is one
                    sequence, only sentences of at most ``seq_len`` characters (75 or 300), padded and
                    masked; bits per character over real characters
    text8           27 symbols (a–z, space), windows of 180, the first 90% / next 5% / last 5% split
                    (90M/5M/5M on the real 100M-character file), bits per character
    shakespeare     the real English corpus these machines have (a text8 stand-in): 84 symbols,
                    90/5/5 split, windows of 180, bits per character
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .base import Task, TaskSpec
from .data import DataError, ensure

LN2 = math.log(2.0)


def _encode(tokens: list[str], vocab: dict[str, int], dtype) -> torch.Tensor:
    try:
        return torch.tensor([vocab[t] for t in tokens], dtype=dtype)
    except KeyError as e:
        raise DataError(f"symbol {e.args[0]!r} is not in the training vocabulary") from e


def ptb_char_tokens(text: str) -> list[str]:
    """PTB-c symbols: space-separated tokens, plus an end-of-line symbol per line."""
    out = []
    for line in text.split("\n"):
        if line.strip():
            out.extend(line.split())
            out.append("<eol>")
    return out


def ptb_word_tokens(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        words = line.split()
        if words:
            out.extend(words)
            out.append("<eos>")
    return out


class LanguageModelTask(Task):
    """Next-token prediction on contiguous windows of ``seq_len`` tokens."""

    def __init__(self, name: str, streams: dict[str, torch.Tensor], vocab: list[str], seq_len: int, metric: str,
                 max_eval_tokens: int | None = 1_000_000):
        if seq_len < 2:
            raise ValueError(f"{name} needs seq_len >= 2, got {seq_len}")
        self.streams, self.vocab = streams, vocab
        self.max_eval_tokens = max_eval_tokens
        V = len(vocab)
        self.spec = TaskSpec(name=name, input_size=V, output_size=V, output="all", seq_len=seq_len,
                             metric_name=metric, lower_is_better=True, vocab_size=V,
                             baseline=math.log2(V) if metric == "bpc" else float(V))

    def train_batch(self, batch_size, generator):
        stream, L = self.streams["train"], self.spec.seq_len
        starts = torch.randint(len(stream) - L - 1, (batch_size,), generator=generator)
        windows = stream[starts.unsqueeze(1) + torch.arange(L + 1)].long()
        return windows[:, :-1], windows[:, 1:]

    def eval_batches(self, split, batch_size, limit=None):
        """Consecutive windows of L tokens from the start of ``split`` (at most ``max_eval_tokens``).
        With ``limit`` fewer than those, ``limit`` windows spread evenly over them: a corpus is not
        uniform (PTB's training text starts harder than its test text), so its first windows would be
        a biased sample of the split."""
        stream, L = self.streams[split], self.spec.seq_len
        n = (len(stream) - 1) // L
        if self.max_eval_tokens:
            n = min(n, max(1, self.max_eval_tokens // L))
        windows_at = torch.arange(n) if limit is None or limit >= n else torch.arange(limit) * n // limit
        for i in range(0, len(windows_at), batch_size):
            idx = windows_at[i:i + batch_size].unsqueeze(1) * L + torch.arange(L + 1)
            windows = stream[idx].long()
            yield windows[:, :-1], windows[:, 1:]

    def loss(self, output, target):
        return torch.nn.functional.cross_entropy(output.flatten(0, 1), target.flatten())

    def metric_sums(self, output, target):
        ce = torch.nn.functional.cross_entropy(output.flatten(0, 1), target.flatten(), reduction="sum").item()
        return ce, ce, target.numel()

    def extra_sums(self, output, target):
        """Next-token accuracy (the 2017 paper's PTB tables give it beside bits per character); padding
        (target −100) never counts as right."""
        return {"accuracy": float((output.argmax(-1) == target).sum())}

    def finish_metric(self, loss_sum, metric_sum, count):
        mean = loss_sum / count
        return mean, (mean / LN2 if self.spec.metric_name == "bpc" else math.exp(min(mean, 700.0)))


class SentenceTask(LanguageModelTask):
    """One PTB-c sentence per sequence; padded to the batch's longest and masked (target −100)."""

    def __init__(self, sentences: dict[str, list[torch.Tensor]], vocab: list[str], max_len: int):
        # max_len counts the sentence's characters, not its <eol>.
        self.sentences = {k: [s for s in v if 2 <= len(s) <= max_len + 1] for k, v in sentences.items()}
        super().__init__("ptb-sentences", {}, vocab, max_len, "bpc")

    def _pad(self, batch: list[torch.Tensor]):
        L = max(len(s) for s in batch) - 1
        x = torch.zeros(len(batch), L, dtype=torch.long)
        y = torch.full((len(batch), L), -100, dtype=torch.long)
        for i, s in enumerate(batch):
            s = s.long()
            x[i, :len(s) - 1] = s[:-1]
            y[i, :len(s) - 1] = s[1:]
        return x, y

    def train_batch(self, batch_size, generator):
        pool = self.sentences["train"]
        idx = torch.randint(len(pool), (batch_size,), generator=generator).tolist()
        return self._pad([pool[i] for i in idx])

    def eval_batches(self, split, batch_size, limit=None):  # the first `limit` sentences: evaluate truncates
        pool = self.sentences[split]
        for i in range(0, len(pool), batch_size):
            yield self._pad(pool[i:i + batch_size])

    def loss(self, output, target):
        return torch.nn.functional.cross_entropy(output.flatten(0, 1), target.flatten(), ignore_index=-100)

    def metric_sums(self, output, target):
        ce = torch.nn.functional.cross_entropy(output.flatten(0, 1), target.flatten(), ignore_index=-100,
                                               reduction="sum").item()
        return ce, ce, int((target != -100).sum())


def _char_streams(text: str, fractions=(0.9, 0.05, 0.05)) -> tuple[dict, list[str]]:
    vocab = sorted(set(text))
    if len(vocab) > 256:
        raise DataError(f"{len(vocab)} distinct characters: more than a character task can hold in uint8")
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor(bytearray(text.encode("latin-1", errors="strict")) if all(ord(c) < 256 for c in vocab)
                       else [index[c] for c in text], dtype=torch.uint8)
    if all(ord(c) < 256 for c in vocab):
        lut = torch.zeros(256, dtype=torch.uint8)
        for c, i in index.items():
            lut[ord(c)] = i
        ids = lut[ids.long()]
    n = len(ids)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}, vocab


TEXT8_SYMBOLS = set("abcdefghijklmnopqrstuvwxyz ")


def load_text8(path: Path, seq_len: int) -> LanguageModelTask:
    text = Path(path).read_text(encoding="ascii", errors="replace")
    bad = set(text) - TEXT8_SYMBOLS
    if bad:
        raise DataError(f"{path}: not a text8 file: it has symbols other than a-z and space, e.g. {sorted(bad)[:3]}")
    if len(text) < 100 * (seq_len + 2):
        raise DataError(f"{path}: too short for windows of {seq_len} ({len(text)} characters); truncated file?")
    streams, vocab = _char_streams(text)  # 90M/5M/5M on the real 100M-character file
    return LanguageModelTask("text8", streams, vocab, seq_len, "bpc")


def make_text_task(name: str, seq_len: int | None, root=None) -> Task:
    if name in ("ptb-char", "ptb-word", "ptb-sentences"):
        d = ensure("ptb", root)
        if name == "ptb-word":
            texts = {s: (d / f"ptb.{s}.txt").read_text() for s in ("train", "valid", "test")}
            tokens = {s: ptb_word_tokens(t) for s, t in texts.items()}
            vocab = sorted(set(tokens["train"]))
            index = {w: i for i, w in enumerate(vocab)}
            streams = {s: _encode(t, index, torch.int16) for s, t in tokens.items()}
            return LanguageModelTask(name, streams, vocab, seq_len or 20, "perplexity")
        texts = {s: (d / f"ptb.char.{s}.txt").read_text() for s in ("train", "valid", "test")}
        if name == "ptb-char":
            tokens = {s: ptb_char_tokens(t) for s, t in texts.items()}
            vocab = sorted(set(tokens["train"]))
            index = {c: i for i, c in enumerate(vocab)}
            streams = {s: _encode(t, index, torch.uint8) for s, t in tokens.items()}
            return LanguageModelTask(name, streams, vocab, seq_len or 50, "bpc")
        # Each sentence ends in an end-of-line symbol to predict: 48 characters + <eol> = 49 symbols.
        lines = {s: [line.split() + ["<eol>"] for line in t.split("\n") if line.strip()] for s, t in texts.items()}
        vocab = sorted({c for line in lines["train"] for c in line})
        index = {c: i for i, c in enumerate(vocab)}
        sentences = {s: [_encode(line, index, torch.uint8) for line in ls] for s, ls in lines.items()}
        return SentenceTask(sentences, vocab, seq_len or 75)
    if name == "text8":
        return load_text8(ensure("text8", root) / "text8", seq_len or 180)
    if name == "shakespeare":
        text = (ensure("shakespeare", root) / "shakespeare.txt").read_text(encoding="utf-8")
        streams, vocab = _char_streams(text)
        return LanguageModelTask(name, streams, vocab, seq_len or 180, "bpc")
    raise ValueError(f"unknown text task {name!r}")
