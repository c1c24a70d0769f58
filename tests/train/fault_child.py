"""Runs `plainrnn train ARGS…` and kills itself with SIGKILL at one chosen moment, as a lost machine or
kill -9 would: ``FAULT=kind:n`` with kind one of

- ``step``: as the n-th training step of this process begins;
- ``append``: in the middle of the n-th metrics record (half of its bytes written, no newline);
- ``checkpoint``: in the middle of the n-th checkpoint's bytes (a torn temporary file);
- ``replace``: the n-th atomic write complete in its temporary file, just before it replaces the file.

Used by test_fault_injection.py as a script; importing it does nothing."""
import io
import json
import os
import signal
import sys


def _install(kind: str, n: int) -> None:
    from plainrnn.train import checkpoint, loop
    seen = {"step": 0, "append": 0, "checkpoint": 0, "replace": 0}
    real_step, real_write, real_save, real_replace = loop.train_step, loop.MetricsLog.write, checkpoint.torch.save, \
        os.replace

    def due(what):
        seen[what] += 1
        return kind == what and seen[what] == n

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def train_step(*args, **kwargs):
        if due("step"):
            die()
        return real_step(*args, **kwargs)

    def write(self, record):
        if due("append"):
            line = (json.dumps(record) + "\n").encode()
            with open(self.path, "ab") as f:
                f.write(line[: len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
            die()
        return real_write(self, record)

    def save(payload, f, *args, **kwargs):
        if due("checkpoint"):
            buffer = io.BytesIO()
            real_save(payload, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            die()
        return real_save(payload, f, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(str(src)).startswith(".") and due("replace"):
            die()
        return real_replace(src, dst, *args, **kwargs)

    loop.train_step = train_step
    loop.MetricsLog.write = write
    checkpoint.torch.save = save
    checkpoint.os.replace = replace


if __name__ == "__main__":
    fault_kind, count = os.environ["FAULT"].split(":")
    _install(fault_kind, int(count))
    from plainrnn.cli import main
    sys.exit(main(sys.argv[1:]))
