"""Live accelerator switching (issue 7): QMP x-accel-switch between kvm and
emu while tests/guest/kernels/switch.c runs its self-checking workload; its
progress lines must keep counting up by one, with no FAIL, and it must
reach PASS (SSE state, RAM and the LAPIC timer survived every switch)."""
import os
import time

import pytest

from test_snapshot import Guest

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="kvm: /dev/kvm not usable here")


def switch(g, accel):
    r = g.q.ret("x-accel-switch", {"accel": accel}, timeout=60)
    assert r["accel"] == accel
    assert g.q.ret("query-accel") == {"accel": accel}
    assert g.q.ret("query-status")["accel"] == accel
    return r["switch-time-us"]


@pytest.mark.parametrize("start,smp", [("emu", 1), ("kvm", 1), ("emu", 2)])
def test_twenty_switches(tmp_path, guests, start, smp):
    g = Guest(tmp_path, start, append="rounds=0 every=500000000", extra=["-smp", str(smp)])
    guests.append(g)
    g.wait_rounds(1)
    other = {"kvm": "emu", "emu": "kvm"}
    cur = start
    for i in range(20):
        cur = other[cur]
        switch(g, cur)
        g.wait_rounds(1)
    g.check_consistent()
    assert g.q.ret("query-status")["status"] == "running"
    assert g.quit() == 0
    g.check_consistent()


def test_switch_runs_to_pass(tmp_path, guests):
    """A finite run switched mid-way ends with PASS (timer check included)."""
    g = Guest(tmp_path, "kvm", append="rounds=12 every=500000000")
    guests.append(g)
    g.wait_rounds(2)
    switch(g, "emu")
    g.wait_rounds(2)
    switch(g, "kvm")
    g.wait_rounds(2)
    switch(g, "emu")
    st = g.wait(120)
    assert b"switch: timer ok" in g.out and b"PASS" in g.out, g.out[-300:]
    assert st == 1
    g.check_consistent()


def test_switch_while_paused_stays_paused(tmp_path, guests):
    g = Guest(tmp_path, "emu")
    guests.append(g)
    g.wait_rounds(1)
    g.q.ret("stop")
    switch(g, "kvm")
    n = len(g.rounds())
    time.sleep(0.5)
    assert len(g.rounds()) == n
    assert g.q.ret("query-status")["status"] == "paused"
    g.q.ret("cont")
    g.wait_rounds(1)
    switch(g, "emu")
    g.wait_rounds(1)
    g.check_consistent()
    assert g.quit() == 0


def test_switch_errors(tmp_path, guests):
    g = Guest(tmp_path, "emu")
    guests.append(g)
    r = g.q.cmd("x-accel-switch", {"accel": "hvf"})
    assert "does not accept value 'hvf'" in r["error"]["desc"]
    assert switch(g, "emu") >= 0      # same accelerator: a no-op
    g.wait_rounds(1)
    assert g.quit() == 0


def test_switch_with_virtio(tmp_path, guests):
    """emu -> kvm -> emu with a virtio-rng-pci the kernel drives from ring 0
    at every progress line (switch.c virtio=1): the device keeps its queue
    and answers under each accelerator; virtio-blk requests in flight would
    be drained first (machine_drain_devices)."""
    g = Guest(tmp_path, "emu", append="rounds=0 every=500000000 virtio=1",
              extra=["-device", "virtio-rng-pci"])
    guests.append(g)
    g.wait_rounds(2)
    switch(g, "kvm")
    g.wait_rounds(2)
    switch(g, "emu")
    g.wait_rounds(2)
    g.check_consistent()
    n = len(g.rounds())
    virtio_lines = g.out.count(b"switch: virtio ")
    assert virtio_lines >= n >= 6, g.out[-600:]
    assert g.quit() == 0
