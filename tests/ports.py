# SPDX-License-Identifier: MIT
#
# ports.py - free loopback ports for the servers the Python tests start
# (tests/integration.py, tests/delivery.py).
import socket


def free_port(host='127.0.0.1'):
    """A TCP port nobody listens on at host (IPv4 or IPv6), right now."""
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_udp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq takes both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(('127.0.0.1', 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError('no free port')
