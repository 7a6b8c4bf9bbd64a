"""QMP, spoken by a client written with the standard library only (socket +
json), against the real vmon running a test kernel that never stops on its
own: the `exits` kernel with a huge count does port writes from user mode
forever, so every state change is visible in its exit counters.

Covers negotiation, the id, stop/cont with their events and query-status
transitions, -S, quit, system_reset, system_powerdown, malformed input,
several clients, disconnects and floods, tcp and the wait=on default, HMP,
and SHUTDOWN reaching the client before vmon exits."""
import json
import os
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import kernel_path

FOREVER = "count=1000000000000"
BASE = ["-m", "128", "-nographic", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


class QMP:
    """A QMP client: greeting, commands with replies, events queued."""

    def __init__(self, address, negotiate=True, timeout=10):
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if negotiate:
            assert self.cmd("qmp_capabilities") == {"return": {}}

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def recv(self, timeout=10):
        """The next message (events included)."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no QMP message")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, timeout=10):
        """The next reply; events met on the way are queued."""
        while True:
            msg = self.recv(timeout)
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def cmd(self, name, args=None, **extra):
        req = {"execute": name, **extra}
        if args is not None:
            req["arguments"] = args
        self.send_raw(json.dumps(req) + "\n")
        return self.reply()

    def ret(self, name, args=None):
        r = self.cmd(name, args)
        assert "return" in r, r
        return r["return"]

    def event(self, name, timeout=10):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            msg = self.recv(max(0.01, deadline - time.time()))
            if "event" not in msg:
                raise AssertionError(f"unexpected reply while waiting for {name}: {msg}")
            self.events.append(msg)

    def no_message(self, wait=0.3):
        r, _, _ = select.select([self.sock], [], [], wait)
        return not r and b"\n" not in self.buf


class VM:
    """vmon running a kernel with a QMP socket; serial output collected."""

    def __init__(self, vmon, tmp_path, accel, extra=(), qmp=None, kernel="exits.elf",
                 append=FOREVER, wait_socket=True, base=None):
        self.sock_path = str(tmp_path / "qmp.sock")
        self.qmp_arg = qmp or f"unix:{self.sock_path},server=on,wait=off"
        args = [vmon, "-accel", accel, *(BASE if base is None else base),
                "-kernel", kernel_path(kernel),
                "-append", append, "-qmp", self.qmp_arg, *extra]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, "out"),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, "err"),
                                          daemon=True)]
        for t in self._readers:
            t.start()
        if wait_socket and self.qmp_arg.startswith("unix:"):
            deadline = time.time() + 20
            while not os.path.exists(self.sock_path):
                if self.proc.poll() is not None or time.time() > deadline:
                    self.kill()
                    pytest.fail(f"vmon did not open its QMP socket: {self.err.decode()}")
                time.sleep(0.02)

    def _pump(self, f, name):
        for chunk in iter(lambda: f.read1(4096), b""):
            setattr(self, name, getattr(self, name) + chunk)

    def client(self, **kw):
        return QMP(self.sock_path, **kw)

    def wait(self, timeout=20):
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("vmon did not exit")
        for t in self._readers:
            t.join(5)
        return status

    def wait_serial(self, text, timeout=30):
        deadline = time.time() + timeout
        while text.encode() not in self.out:
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"no {text!r} on serial: {self.out!r} {self.err!r}")
            time.sleep(0.05)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def status_of(q):
    """query-status without vmon's additive "accel" field (checked apart)."""
    st = q.ret("query-status")
    assert st.pop("accel") in ("kvm", "emu")
    return st


@pytest.fixture
def vm_factory(vmon, tmp_path):
    vms = []

    def make(accel, *args, **kw):
        vm = VM(vmon, tmp_path, accel, *args, **kw)
        vms.append(vm)
        return vm
    yield make
    for vm in vms:
        vm.kill()


def io_exits(q):
    stats = q.ret("query-stats", {"target": "vm"})
    for s in stats[0]["stats"]:
        if s["name"] == "io_exits":
            return s["value"]
    raise AssertionError(f"no io_exits in {stats}")


def snapshot(q):
    """What changes while the guest runs: its exit counters and its
    registers (the loop counter), so progress shows under any accelerator,
    even one that counts no exits."""
    regs = q.ret("human-monitor-command", {"command-line": "info registers"})
    return io_exits(q), regs


def wait_exits_grow(q, timeout=20):
    first = snapshot(q)
    deadline = time.time() + timeout
    while snapshot(q) == first:
        assert time.time() < deadline, "the guest makes no progress"
        time.sleep(0.05)


def test_greeting_and_negotiation(accel, vm_factory):
    vm = vm_factory(accel)
    q = vm.client(negotiate=False)
    g = q.greeting["QMP"]
    assert g["capabilities"] == []
    ver = g["version"]["qemu"]
    assert all(isinstance(ver[k], int) for k in ("major", "minor", "micro"))
    assert g["version"]["package"].startswith("vmon-")
    assert q.cmd("query-status") == {"error": {
        "class": "CommandNotFound",
        "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
    assert q.cmd("qmp_capabilities", id="neg") == {"return": {}, "id": "neg"}
    r = q.cmd("qmp_capabilities")
    assert r["error"]["class"] == "CommandNotFound"
    assert q.ret("query-version") == g["version"]
    names = {c["name"] for c in q.ret("query-commands")}
    assert names >= {"qmp_capabilities", "query-version", "query-commands", "query-name",
                     "query-status", "query-cpus-fast", "query-kvm", "query-block",
                     "query-chardev", "stop", "cont", "system_reset", "system_powerdown",
                     "quit", "human-monitor-command", "query-stats", "query-stats-schemas"}
    # the id comes back verbatim, whatever JSON it is
    for ident in (1, "x", [1, {"a": None}], {"deep": [True, 2.5]}):
        assert q.cmd("query-name", id=ident)["id"] == ident


def test_stop_cont_events_and_status(accel, vm_factory):
    vm = vm_factory(accel)
    q = vm.client()
    st = status_of(q)
    assert st == {"status": "running", "singlestep": False, "running": True}
    wait_exits_grow(q)

    assert q.cmd("stop") == {"return": {}}
    ev = q.event("STOP")
    assert set(ev["timestamp"]) == {"seconds", "microseconds"}
    assert abs(ev["timestamp"]["seconds"] - time.time()) < 60
    assert 0 <= ev["timestamp"]["microseconds"] < 1000000
    assert status_of(q) == {"status": "paused", "singlestep": False, "running": False}
    # paused means paused: no more exits, registers frozen
    before = snapshot(q)
    time.sleep(0.5)
    assert snapshot(q) == before
    # stopping twice is harmless and sends no second event
    assert q.cmd("stop") == {"return": {}}
    assert q.no_message()

    assert q.cmd("cont") == {"return": {}}
    q.event("RESUME")
    assert q.ret("query-status")["status"] == "running"
    wait_exits_grow(q)


def test_start_paused_until_cont(accel, vm_factory):
    vm = vm_factory(accel, extra=["-S"])
    q = vm.client()
    assert status_of(q) == {"status": "prelaunch", "singlestep": False,
                                     "running": False}
    time.sleep(0.5)
    assert io_exits(q) == 0
    assert vm.out == b""               # not one instruction ran
    q.cmd("cont")
    q.event("RESUME")
    assert q.ret("query-status")["status"] == "running"
    wait_exits_grow(q)
    vm.wait_serial("exits: ")


def test_quit_sends_shutdown_and_exits_zero(accel, vm_factory):
    vm = vm_factory(accel)
    q = vm.client()
    assert q.cmd("quit", id=5) == {"return": {}, "id": 5}
    # QEMU 7.2 sends the event before the reply; the client queued it
    assert [e["event"] for e in q.events] == ["SHUTDOWN"]
    ev = q.event("SHUTDOWN")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert vm.wait() == 0
    assert not os.path.exists(vm.sock_path)


def test_guest_shutdown_reaches_client_before_exit(accel, vm_factory):
    """The guest powers off by itself (debug-exit): SHUTDOWN is flushed to
    the client before vmon exits."""
    vm = vm_factory(accel, extra=["-S"], append="count=100")
    q = vm.client()
    q.cmd("cont")
    ev = q.event("SHUTDOWN", timeout=60)
    assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}
    assert vm.wait() == 1              # debug-exit 0 -> status 1


def test_no_shutdown_keeps_qmp_until_quit(accel, vm_factory):
    """-no-shutdown (what libvirt always passes): the guest's power-off
    stops the VM, QMP stays up, and quit ends vmon with the guest's status."""
    vm = vm_factory(accel, extra=["-S", "-no-shutdown"], append="count=100")
    q = vm.client()
    q.cmd("cont")
    assert q.event("SHUTDOWN", timeout=60)["data"] == {"guest": True, "reason": "guest-shutdown"}
    q.event("STOP")
    assert status_of(q) == {"status": "shutdown", "singlestep": False,
                                     "running": False}
    assert vm.proc.poll() is None
    assert q.cmd("cont")["error"]["class"] == "GenericError"
    assert q.cmd("system_reset")["error"]["class"] == "GenericError"
    assert q.cmd("quit") == {"return": {}}
    assert q.event("SHUTDOWN")["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert vm.wait() == 1              # debug-exit 0 -> status 1


def test_system_reset(accel, vm_factory):
    vm = vm_factory(accel)
    q = vm.client()
    vm.wait_serial("accesses")
    q.cmd("system_reset")
    # As QEMU does: the RESET event comes before the command's reply.
    assert any(e["event"] == "RESET" for e in q.events)
    ev = q.event("RESET")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    assert q.ret("query-status")["status"] == "running"
    # the kernel booted a second time
    deadline = time.time() + 30
    while vm.out.count(b"accesses") < 2:
        assert time.time() < deadline, vm.out
        time.sleep(0.05)


def test_system_reset_under_no_reboot_shuts_down(accel, vm_factory):
    vm = vm_factory(accel, extra=["-no-reboot"])
    q = vm.client()
    q.cmd("system_reset")
    ev = q.event("SHUTDOWN")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    assert vm.wait() == 0


def power_button_kernel(path):
    """A Multiboot (a.out kludge) kernel that polls PM1 status for
    PWRBTN_STS and then enters S5, as an OS's ACPI button driver would:
        1: mov dx, 0x600; in ax, dx; test ax, 0x100; jz 1b
           mov dx, 0x604; mov ax, SLP_EN | SLP_TYP 0; out dx, ax; hlt"""
    import struct
    base, magic, flags = 0x100000, 0x1BADB002, 1 << 16
    header = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xffffffff,
                         base, base, 0, 0, base + 32)
    code = bytes.fromhex("66ba0006" "66ed" "66a90001" "74f4"
                         "66ba0406" "66b80020" "66ef" "f4" "ebfd")
    with open(path, "wb") as f:
        f.write(header + code)
    return str(path)


def test_system_powerdown_shuts_down_an_acpi_guest(accel, vmon, tmp_path):
    """system_powerdown presses the ACPI power button; a guest that watches
    PWRBTN_STS powers off: POWERDOWN, then SHUTDOWN from the guest, exit 0."""
    kernel = power_button_kernel(tmp_path / "pwrbtn.bin")
    sock = str(tmp_path / "qmp.sock")
    proc = subprocess.Popen([vmon, "-accel", accel, "-m", "128", "-nographic",
                             "-kernel", kernel, "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.02)
        q = QMP(sock)
        time.sleep(0.5)
        assert proc.poll() is None            # the guest waits for the button
        assert q.ret("query-status")["status"] == "running"
        assert q.cmd("system_powerdown") == {"return": {}}
        q.event("POWERDOWN")
        ev = q.event("SHUTDOWN", timeout=60)
        assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_system_powerdown_sends_powerdown(accel, vm_factory):
    """POWERDOWN is emitted and the guest keeps running; the `exits` kernel
    does not handle the ACPI power button, so the shutdown that a guest
    with an ACPI driver would do is not checked here."""
    vm = vm_factory(accel)
    q = vm.client()
    assert q.cmd("system_powerdown") == {"return": {}}
    q.event("POWERDOWN")
    assert q.ret("query-status")["status"] == "running"


def test_malformed_input_keeps_connection_and_vm(accel, vm_factory):
    vm = vm_factory(accel)
    q = vm.client()

    def error(raw):
        q.send_raw(raw)
        r = q.reply()
        assert "error" in r, r
        return r["error"]

    e = error('{"execute": "query-status", }\n')
    assert e["class"] == "GenericError" and e["desc"].startswith("JSON parse error, ")
    assert error("[1, 2]\n") == {"class": "GenericError", "desc": "QMP input must be a JSON object"}
    assert error('"hello"\n')["desc"] == "QMP input must be a JSON object"
    assert error('{"execute": "frobnicate"}') == {
        "class": "CommandNotFound", "desc": "The command frobnicate has not been found"}
    assert error('{"execute": "stop", "arguments": {"now": true}}') == {
        "class": "GenericError", "desc": "Parameter 'now' is unexpected"}
    assert error('{"execute": "human-monitor-command", "arguments": {"command-line": 1}}') == {
        "class": "GenericError",
        "desc": "Invalid parameter type for 'command-line', expected: string"}
    assert error('{"execute": "human-monitor-command"}') == {
        "class": "GenericError", "desc": "Parameter 'command-line' is missing"}
    assert error('{"execute": "query-status", "arguments": 3}')["desc"] == \
        "QMP input member 'arguments' must be an object"
    assert error('{"execute": "query-status", "bogus": 1}')["desc"] == \
        "QMP input member 'bogus' is unexpected"
    # an oversized request is refused once, the stream carries on
    big = '{"execute": "query-status", "id": "' + "x" * (2 << 20) + '"}'
    e = error(big)
    assert "JSON parse error" in e["desc"]
    # binary garbage: only errors, then the next request is answered
    q.send_raw(b"\xff\xfe}\n")
    q.send_raw('{"execute": "query-status", "id": "after"}')
    while True:
        r = q.reply()
        if r.get("id") == "after":
            break
        assert r["error"]["class"] == "GenericError"
    assert r["return"]["status"] == "running"
    wait_exits_grow(q)


def test_two_clients_get_events(accel, vm_factory):
    vm = vm_factory(accel)
    a, b = vm.client(), vm.client()
    late = vm.client(negotiate=False)          # never negotiates: no events
    a.cmd("stop")
    a.event("STOP")
    b.event("STOP")
    b.cmd("cont")
    a.event("RESUME")
    b.event("RESUME")
    assert late.no_message()
    assert late.cmd("query-status")["error"]["class"] == "CommandNotFound"


def test_disconnects_and_floods_do_not_stall(accel, vm_factory):
    vm = vm_factory(accel)
    # half a request, then gone
    for _ in range(3):
        c = vm.client()
        c.send_raw('{"execute": "query-sta')
        c.close()
    c = vm.client(negotiate=False)
    c.close()
    # a client that floods and never reads its replies
    flood = vm.client()
    flood.sock.setblocking(False)
    req = b'{"execute": "query-commands"}\n' * 2000
    sent = 0
    deadline = time.time() + 5
    while sent < len(req) and time.time() < deadline:
        try:
            sent += flood.sock.send(req[sent:])
        except BlockingIOError:
            time.sleep(0.01)
    # everyone else is served promptly and the guest keeps running
    q = vm.client()
    t0 = time.time()
    assert q.ret("query-status")["status"] == "running"
    assert time.time() - t0 < 2
    wait_exits_grow(q)
    q.cmd("stop")
    q.event("STOP")        # events still reach the well-behaved client
    q.cmd("cont")
    q.event("RESUME")
    flood.close()
    assert q.ret("query-status")["running"] is True


def test_client_limit(accel, vm_factory):
    """64 clients at once are served; the 65th is closed at once and the
    others do not notice."""
    vm = vm_factory(accel)
    clients = [vm.client(negotiate=False) for _ in range(64)]
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.settimeout(10)
    extra.connect(vm.sock_path)
    assert extra.recv(4096) == b""
    extra.close()
    for c in clients[:3] + clients[-3:]:
        assert c.cmd("qmp_capabilities") == {"return": {}}
    for c in clients[1:]:
        c.close()
    time.sleep(0.2)
    fresh = vm.client()
    assert fresh.ret("query-status")["status"] == "running"


def test_hmp_subset(accel, vm_factory):
    vm = vm_factory(accel, extra=["-smp", "2"])
    q = vm.client()

    def hmp(line, **kw):
        return q.ret("human-monitor-command", {"command-line": line, **kw})

    assert hmp("info status") == "VM status: running\r\n"
    cpus = q.ret("query-cpus-fast")
    info = hmp("info cpus")
    for c in cpus:
        assert f"CPU #{c['cpu-index']}: thread_id={c['thread-id']}" in info
    regs = hmp("info registers")
    assert "RIP=" in regs and "CR0=" in regs and "EFER=" in regs
    assert "RIP=" in hmp("info registers", **{"cpu-index": 1})
    r = q.cmd("human-monitor-command", {"command-line": "info registers", "cpu-index": 5})
    assert r["error"] == {"class": "GenericError",
                          "desc": "Parameter 'cpu-index' expects a CPU number"}
    wait_exits_grow(q)
    stats = hmp("info stats")
    assert "VM-EXIT" in stats and " IO " in stats
    assert hmp("info block") == ""
    assert hmp("frob") == "unknown command: 'frob'\r\n"
    assert "info status" in hmp("help")
    hmp("stop")
    q.event("STOP")
    assert hmp("info status") == "VM status: paused\r\n"
    hmp("cont")
    q.event("RESUME")


def test_query_commands_shapes(accel, vm_factory):
    vm = vm_factory(accel, extra=["-smp", "2", "-name", "qmptest"])
    q = vm.client()
    assert q.ret("query-name") == {"name": "qmptest"}
    kvm = q.ret("query-kvm")
    assert kvm["enabled"] == (accel == "kvm")
    assert kvm["present"] is True or accel != "kvm"
    assert q.ret("query-block") == []
    chardevs = {c["label"]: c for c in q.ret("query-chardev")}
    assert chardevs["serial0"]["filename"] == "stdio"
    assert chardevs["serial0"]["frontend-open"] is True
    assert chardevs["compat_monitor0"]["filename"] == f"unix:{vm.sock_path},server=on"
    cpus = q.ret("query-cpus-fast")
    assert [c["cpu-index"] for c in cpus] == [0, 1]
    for i, c in enumerate(cpus):
        assert c["qom-path"] == f"/machine/unattached/device[{i}]"
        assert c["target"] == "x86_64"
        assert c["props"] == {"core-id": i, "thread-id": 0, "socket-id": 0}
        assert isinstance(c["thread-id"], int) and c["thread-id"] > 0
    wait_exits_grow(q)
    per_cpu = q.ret("query-stats", {"target": "vcpu",
                                    "vcpus": ["/machine/unattached/device[0]"]})
    assert len(per_cpu) >= 1
    assert per_cpu[0]["qom-path"] == "/machine/unattached/device[0]"
    names = {s["name"] for s in per_cpu[0]["stats"]}
    assert {"io_exits", "io_exit_time", "io_exit_time_min", "io_exit_time_max",
            "exits"} <= names
    if accel == "emu":
        # The emulator's own counters: the guest has run code, taken timer
        # interrupts and filled its TLB by now.
        emu = {s["name"]: s["value"] for s in per_cpu[0]["stats"]}
        assert emu["instructions"] > 0 and emu["blocks-executed"] > 0
        assert 0 < emu["blocks-translated"] <= emu["blocks-executed"]
        assert emu["tlb-misses"] > 0
        assert {"exceptions", "interrupts"} <= set(emu)
    schemas = q.ret("query-stats-schemas")
    assert {(s["provider"], s["target"]) for s in schemas} >= {(accel, "vm"), (accel, "vcpu")}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_tcp_with_old_spelling(accel, vm_factory):
    port = free_port()
    vm = vm_factory(accel, qmp=f"tcp:127.0.0.1:{port},server,nowait")
    deadline = time.time() + 20
    while True:
        try:
            q = QMP(("127.0.0.1", port))
            break
        except OSError:
            assert time.time() < deadline and vm.proc.poll() is None, vm.err
            time.sleep(0.05)
    assert q.ret("query-status")["status"] == "running"
    q.cmd("quit")
    q.event("SHUTDOWN")
    assert vm.wait() == 0


def test_server_waits_for_a_client_by_default(accel, vm_factory, tmp_path):
    """QEMU's default for a server socket is wait=on: nothing runs until a
    client connects."""
    path = str(tmp_path / "qmp.sock")
    vm = vm_factory(accel, qmp=f"unix:{path},server=on", wait_socket=False)
    deadline = time.time() + 20
    while not os.path.exists(path):
        assert time.time() < deadline and vm.proc.poll() is None, vm.err
        time.sleep(0.02)
    time.sleep(0.3)
    assert vm.out == b""
    q = QMP(path)
    vm.wait_serial("accesses")
    q.cmd("quit")
    assert vm.wait() == 0


def test_bad_qmp_option_is_a_clear_error(vmon, tmp_path):
    k = kernel_path("exits.elf")
    p = subprocess.run([vmon, "-kernel", k, "-qmp", "unix:/tmp/x.sock,serve=on"],
                       capture_output=True, timeout=30)
    assert p.returncode == 1
    assert b"-qmp unix:/tmp/x.sock,serve=on" in p.stderr
    p = subprocess.run([vmon, "-kernel", k, "-qmp", "pipe:foo,server=on"],
                       capture_output=True, timeout=30)
    assert p.returncode == 1
    assert b"expected unix:PATH or tcp:HOST:PORT" in p.stderr
