"""Who is the teacher, and where students join: the pure rules of serving.classroom."""

from __future__ import annotations

import ipaddress
import json
import socket
from types import SimpleNamespace

import pytest

from serving import classroom
from serving.classroom import STUDENT, TEACHER
from tests import netns

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_switches(monkeypatch):
    for name in (classroom.TRUST_LOCALHOST_ENV, classroom.SINGLE_USER_ENV,
                 classroom.PASSWORD_ENV, classroom.JOIN_URL_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("ip", [None, "::ffff:127.0.0.1", "127.0.0.1", "::1"])
def test_a_visitor_on_the_servers_machine_is_the_teacher(ip):
    assert classroom.is_local_peer(ip)
    assert classroom.role_for(ip) == TEACHER


@pytest.mark.parametrize("ip", ["::ffff:127.0.0.2", "127.0.0.2", "::ffff:192.168.1.20",
                                "10.0.0.5", "192.168.1.20", "fe80::1", "2001:db8::7",
                                "unknown", ""])
def test_every_other_address_is_a_student(ip):
    assert not classroom.is_local_peer(ip)
    assert classroom.role_for(ip) == STUDENT


def test_a_student_who_signed_in_is_the_teacher():
    assert classroom.role_for("10.0.0.5", signed_in=True) == TEACHER


def test_untrusting_localhost_makes_local_visitors_students(monkeypatch):
    monkeypatch.setenv(classroom.TRUST_LOCALHOST_ENV, "0")
    assert classroom.role_for(None) == STUDENT
    assert classroom.role_for("::ffff:127.0.0.1") == STUDENT
    assert classroom.role_for(None, signed_in=True) == TEACHER


def test_single_user_makes_everyone_the_teacher(monkeypatch):
    assert classroom.role_for("10.0.0.5") == STUDENT
    monkeypatch.setenv(classroom.SINGLE_USER_ENV, "1")
    assert classroom.role_for("10.0.0.5") == TEACHER


@pytest.mark.parametrize("value, expected", [("0", False), ("false", False), ("off", False),
                                             ("1", True), ("yes", True), ("", True)])
def test_the_trust_switch_reads_common_spellings(monkeypatch, value, expected):
    monkeypatch.setenv(classroom.TRUST_LOCALHOST_ENV, value)
    assert classroom.trust_localhost() is expected


def test_password_compare_is_exact():
    assert classroom.password_matches("correct horse", "correct horse")
    assert not classroom.password_matches("correct hors", "correct horse")
    assert not classroom.password_matches("", "x")
    assert classroom.password_matches("żółw\udcff", "żółw\udcff")  # any text, even odd


def test_an_unset_or_empty_password_means_none(monkeypatch):
    assert classroom.configured_password() is None
    monkeypatch.setenv(classroom.PASSWORD_ENV, "")
    assert classroom.configured_password() is None
    monkeypatch.setenv(classroom.PASSWORD_ENV, "s3cret")
    assert classroom.configured_password() == "s3cret"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_wrong_passwords_slow_down_per_address():
    clock = FakeClock()
    throttle = classroom.SignInThrottle(clock=clock)
    for _ in range(classroom.FREE_TRIES):
        assert throttle.wait_seconds("10.0.0.5") == 0
        throttle.failed("10.0.0.5")
    first_wait = throttle.wait_seconds("10.0.0.5")
    assert first_wait > 0
    assert throttle.wait_seconds("10.0.0.6") == 0  # another address is not slowed
    clock.now += first_wait
    assert throttle.wait_seconds("10.0.0.5") == 0
    throttle.failed("10.0.0.5")
    assert throttle.wait_seconds("10.0.0.5") == 2 * first_wait  # doubles each time
    for _ in range(20):
        throttle.failed("10.0.0.5")
    assert throttle.wait_seconds("10.0.0.5") == classroom.MAX_WAIT_SECONDS
    throttle.succeeded("10.0.0.5")
    assert throttle.wait_seconds("10.0.0.5") == 0


def test_the_throttle_forgets_old_addresses_beyond_a_bound():
    throttle = classroom.SignInThrottle(clock=FakeClock())
    for n in range(10_050):
        throttle.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(throttle._failures) <= 10_000


def test_script_runs_per_address_come_in_a_burst_then_at_the_rate():
    clock = FakeClock()
    runs = classroom.RunThrottle(rate=5.0, burst=15, clock=clock)
    assert all(runs.take("10.0.0.5") == 0.0 for _ in range(15))  # a burst: strokes, taps
    wait = runs.take("10.0.0.5")
    assert wait == pytest.approx(1 / 5)  # then one every 0.2 s ...
    assert runs.take("10.0.0.5") == pytest.approx(wait)  # ... and asking again gives nothing
    assert runs.take("10.0.0.6") == 0.0  # another address has its own
    clock.now += wait
    assert runs.take("10.0.0.5") == 0.0
    assert runs.take("10.0.0.5") > 0
    clock.now += 60  # a quiet minute refills the burst, no more
    assert sum(runs.take("10.0.0.5") == 0.0 for _ in range(40)) == 15


def test_the_run_throttle_forgets_full_buckets_beyond_a_bound():
    clock = FakeClock()
    runs = classroom.RunThrottle(clock=clock)
    for n in range(classroom.MAX_TRACKED_ADDRESSES + 50):
        runs.take(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    clock.now += 60
    runs.take("10.200.0.1")
    assert list(runs._buckets) == ["10.200.0.1"]  # the idle ones forgotten: full again anyway
    for _ in range(classroom.RUN_BURST):
        runs.take("10.200.0.1")
    assert runs.take("10.200.0.1") > 0  # an active one is kept, with its count


INTERFACES = {
    "lo": ["127.0.0.1", "::1"],
    "wlan0": ["192.168.1.20", "fe80::1234%wlan0", "2001:db8::20"],
    "docker0": ["172.17.0.1"],
    "eth0": ["203.0.113.7"],
    "usb0": ["169.254.3.4"],
    "weird": ["not an address"],
}


def test_join_address_puts_the_default_route_first_and_never_loopback():
    assert classroom.join_addresses(INTERFACES, "203.0.113.7") == [
        "203.0.113.7", "192.168.1.20", "172.17.0.1", "2001:db8::20"]


def test_join_address_without_a_default_route_prefers_private_ipv4():
    assert classroom.join_addresses(INTERFACES, None) == [
        "192.168.1.20", "172.17.0.1", "203.0.113.7", "2001:db8::20"]


def test_join_address_on_a_machine_with_only_loopback_is_empty():
    assert classroom.join_addresses({"lo": ["127.0.0.1", "::1"]}, None) == []
    assert classroom.join_addresses({"lo": ["127.0.0.1"]}, "127.0.0.1") == []


def test_join_url_brackets_ipv6_and_the_override_wins(monkeypatch):
    assert classroom.join_url("192.168.1.20", 8501) == "http://192.168.1.20:8501"
    assert classroom.join_url("2001:db8::20", 8501) == "http://[2001:db8::20]:8501"
    monkeypatch.setenv(classroom.JOIN_URL_ENV, "http://mnist.local:8501")
    assert classroom.join_urls(8501) == ["http://mnist.local:8501"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8501", "127.0.0.1:8501", "[::1]:8501",
                                  "[::1]", "LOCALHOST:1", "app.localhost:8501"])
def test_loopback_host_names_are_local(host):
    assert classroom.is_local_host(host)


@pytest.mark.parametrize("host", ["attacker.example:8501", "192.168.1.20:8501", "", "127.0.0.2",
                                  "localhost.attacker.example", "[::2]:8501", "evil:localhost"])
def test_other_host_names_are_not(host):
    assert not classroom.is_local_host(host)


def test_visitor_keys_count_a_device_once():
    assert classroom.visitor_key("192.168.1.20", "s1") == "192.168.1.20"
    assert classroom.visitor_key("::ffff:192.168.1.20", "s1") == "192.168.1.20"
    # From beyond a router, any address of one IPv6 /64 is one visitor: a site can take any.
    assert (classroom.visitor_key("2001:db8:1:2::7", "s1", on_link=())
            == classroom.visitor_key("2001:db8:1:2:ffff::1", "s2", on_link=())
            == "2001:db8:1:2::/64")
    assert classroom.visitor_key("2001:db8:1:3::7", "s1", on_link=()) != "2001:db8:1:2::/64"
    # Unknown (a proxy that does not pass the address): each session on its own.
    assert classroom.visitor_key(None, "s1") == "session:s1"
    assert classroom.visitor_key("unknown", "s2") == "session:s2"


def test_ipv6_students_on_the_servers_own_network_are_each_a_visitor():
    # The classroom's Wi-Fi is one /64 for every device on it: counted by /64, the whole
    # class would share one student's allowance of runs, drawings and password tries.
    room = [ipaddress.IPv6Network("2001:db8:1:2::/64")]
    keys = {classroom.visitor_key(address, "s", on_link=room)
            for address in ("2001:db8:1:2::7", "2001:db8:1:2:ffff::1", "2001:db8:1:2::8")}
    assert keys == {"2001:db8:1:2::7", "2001:db8:1:2:ffff::1", "2001:db8:1:2::8"}
    assert classroom.visitor_key("2001:db8:9:9::7", "s", on_link=room) == "2001:db8:9:9::/64"
    # Wrong passwords still count for the whole /64: a device can take any address in it.
    assert {classroom.network_key(address, "s") for address in
            ("2001:db8:1:2::7", "2001:db8:1:2:ffff::1")} == {"2001:db8:1:2::/64"}
    assert classroom.network_key("::ffff:192.168.1.20", "s") == "192.168.1.20"
    assert classroom.network_key("junk", "s") == "session:s"
    # Link-local addresses (a .local name may resolve to one) are always on the same link.
    assert classroom.visitor_key("fe80::1%wlan0", "s", on_link=()) == "fe80::1"
    assert classroom.visitor_key("fe80::2", "s", on_link=()) == "fe80::2"


def test_the_machines_own_ipv6_networks_are_read_from_its_interfaces_and_kept_a_while(
        monkeypatch):
    clock = iter([1000.0, 1001.0, 1000.0 + 2 * classroom.IPV6_NETWORKS_FOR]).__next__
    monkeypatch.setattr(classroom, "_ipv6_networks", [float("-inf"), ()])
    first = classroom.local_ipv6_networks(clock)
    classroom._ipv6_networks[1] = (ipaddress.IPv6Network("2001:db8::/64"),)  # as if it changed
    assert classroom.local_ipv6_networks(clock) == (ipaddress.IPv6Network("2001:db8::/64"),)
    assert classroom.local_ipv6_networks(clock) == first  # looked again
    assert all(not (n.is_loopback or n.is_link_local) for n in first)


def test_the_machines_networks_are_the_64s_of_its_addresses_on_interfaces_that_are_up(
        monkeypatch):
    import psutil

    def entry(address, netmask):
        return SimpleNamespace(family=socket.AF_INET6, address=address, netmask=netmask)

    interfaces = {
        "lo": [entry("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")],
        "wlan0": [SimpleNamespace(family=socket.AF_INET, address="192.168.1.2",
                                  netmask="255.255.255.0"),
                  entry("fe80::1%wlan0", "ffff:ffff:ffff:ffff::"),
                  entry("fd00:1::5", None),  # some systems give no mask
                  entry("2001:db8:7::9", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")],  # DHCPv6
        "eth1": [entry("2001:db8:9::1", "ffff:ffff:ffff:ffff::")],  # down
        "odd": [entry("not an address", "::")],
    }
    up = {name: SimpleNamespace(isup=name != "eth1") for name in interfaces}
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: interfaces)
    monkeypatch.setattr(psutil, "net_if_stats", lambda: up)
    monkeypatch.setattr(classroom, "_ipv6_networks", [float("-inf"), ()])
    found = classroom.local_ipv6_networks(lambda: 1000.0)
    assert [str(n) for n in found] == ["2001:db8:7::/64", "fd00:1::/64"]

    def broken():
        raise RuntimeError("no interfaces here")

    monkeypatch.setattr(psutil, "net_if_addrs", broken)  # a failed look keeps the last one
    assert classroom.local_ipv6_networks(lambda: 1000.0 + 2 * classroom.IPV6_NETWORKS_FOR) \
        == found


def test_a_classroom_network_on_the_machine_makes_its_devices_visitors_of_their_own():
    # In a network namespace of its own, the machine is on fd00:c1a5::/64 (its loopback
    # holds fd00:c1a5::1, as a Wi-Fi interface would): what the server process then keys.
    netns.require()  # root: skipped with the reason elsewhere, run in CI
    # And fd00:d4c9::1/128, as DHCPv6 gives it: its /64 is the room's network too.
    result = netns.run_python(["-6 addr add fd00:c1a5::1/64 dev lo nodad",
                               "-6 addr add fd00:d4c9::1/128 dev lo nodad"],
                              "tests.visitor_key_probe", "fd00:c1a5::7", "fd00:c1a5::8",
                              "fd00:d4c9::5", "fd00:beef::7", "fe80::7")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "networks": ["fd00:c1a5::/64", "fd00:d4c9::/64"],
        "keys": ["fd00:c1a5::7", "fd00:c1a5::8", "fd00:d4c9::5", "fd00:beef::/64", "fe80::7"]}
