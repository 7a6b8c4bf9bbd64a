"""Parser for kernels.txt, shared by the system tests and qemu_check.py."""
import os
import shlex

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_ARGS = ["-m", "128", "-nographic", "-no-reboot",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


class Kernel:
    def __init__(self, name, image, status, args):
        self.name, self.image, self.status, self.args = name, image, status, args
        self.qemu_args = []

    def expected(self, qemu=False):
        base = os.path.join(HERE, "expected", self.name)
        if qemu and os.path.exists(base + ".qemu.txt"):
            base += ".qemu"
        with open(base + ".txt") as f:
            return f.read()


def load():
    kernels = {}
    with open(os.path.join(HERE, "kernels.txt")) as f:
        for line in f:
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if words[0].startswith("qemu:"):
                kernels[words[0][5:]].qemu_args += words[1:]
                continue
            name, image, status = words[:3]
            kernels[name] = Kernel(name, image, int(status), words[3:])
    return kernels
